//! The core's contract and property suites, unchanged, on a real PostgreSQL server.

use payment_postgres::testing::PgFactory;

payment_core::store_contract_tests!(PgFactory);

#[test]
fn exactly_once_property() {
    payment_core::testing::property::check(&PgFactory, 256);
}
