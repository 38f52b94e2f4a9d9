//! The in-memory store runs the whole contract and property suite.

use async_trait::async_trait;
use payment_core::memory::MemoryStore;
use payment_core::testing::StoreFactory;

struct Memory;

#[async_trait]
impl StoreFactory for Memory {
    type Store = MemoryStore;

    async fn fresh(&self) -> MemoryStore {
        MemoryStore::new()
    }
}

payment_core::store_contract_tests!(Memory);

#[test]
fn exactly_once_property() {
    payment_core::testing::property::check(&Memory, 2000);
}
