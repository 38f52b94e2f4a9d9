//! The ledger in the database: edits and deletions of ledger entries and payments are refused by
//! the schema, each entry records its cause, `MIGRATE=skip`'s schema check, and reconciliation
//! finding what a superuser changed with the triggers disabled.

use std::time::Duration;

use payment_core::app::Payments;
use payment_core::domain::{Amount, IdempotencyKey, Inbound, MessageId, OrderId, PayOrder, UserId};
use payment_core::testing::block_on;
use payment_postgres::testing::fresh_store;
use payment_postgres::PgStore;

const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `u1` deposits 100 (keyed `k1`) and pays order `o1` 30 by message `m1`.
async fn one_deposit_and_one_payment(store: &PgStore) {
    let payments = Payments::new(store.clone());
    let user = UserId::new("u1").unwrap();
    payments.create_account(&user).await.unwrap();
    let key = IdempotencyKey::new("k1").unwrap();
    payments.deposit(&user, "100".parse().unwrap(), Some(&key)).await.unwrap();
    let order = PayOrder::new(OrderId::new("o1").unwrap(), user, "30".parse::<Amount>().unwrap());
    payments.pay_orders(&[Inbound::pay(MessageId::new("m1").unwrap(), order)]).await.unwrap();
}

async fn execute(store: &PgStore, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sql).execute(store.pool()).await.map(|done| done.rows_affected())
}

#[test]
fn the_database_refuses_edits_of_the_ledger_and_of_payments() {
    block_on(async {
        let store = fresh_store(2).await;
        one_deposit_and_one_payment(&store).await;
        for edit in [
            "UPDATE ledger_entries SET amount = amount + 1",
            "UPDATE ledger_entries SET cause = 'rewritten'",
            "DELETE FROM ledger_entries WHERE kind = 'payment'",
            "TRUNCATE ledger_entries CASCADE",
            "UPDATE payments SET amount = 1",
            "UPDATE payments SET user_id = 'u1', paid_at = now()",
            "DELETE FROM payments",
            // CASCADE: refunds reference payments, and a plain TRUNCATE is refused by that foreign
            // key before the trigger is asked.
            "TRUNCATE payments CASCADE",
        ] {
            let refused = execute(&store, edit).await.expect_err(edit);
            let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("23000"), "{edit}: {refused}");
        }
        // A column added later may change: the facts of the payment may not. (`UPDATE ... SET
        // order_id = order_id` changes nothing, so it passes.)
        assert_eq!(execute(&store, "UPDATE payments SET order_id = order_id").await.unwrap(), 1);
        let report = store.reconcile(RETENTION).await.unwrap();
        assert!(report.is_clean(), "{report}");
    });
}

#[test]
fn every_ledger_entry_records_its_cause() {
    block_on(async {
        let store = fresh_store(2).await;
        one_deposit_and_one_payment(&store).await;
        let unkeyed = Payments::new(store.clone());
        unkeyed.deposit(&UserId::new("u1").unwrap(), "1".parse().unwrap(), None).await.unwrap();
        let causes: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT kind, cause FROM ledger_entries ORDER BY position")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(
            causes,
            [
                ("deposit".to_string(), Some("idempotency-key:k1".to_string())),
                ("payment".to_string(), Some("message:m1".to_string())),
                ("deposit".to_string(), None),
            ]
        );
    });
}

#[test]
fn reconcile_finds_what_a_superuser_changed_with_the_triggers_off() {
    block_on(async {
        let store = fresh_store(2).await;
        one_deposit_and_one_payment(&store).await;
        assert!(store.reconcile(RETENTION).await.unwrap().is_clean());
        // The test database's owner is a superuser: it can switch the guard off.
        execute(&store, "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only").await.unwrap();
        execute(&store, "DELETE FROM ledger_entries WHERE kind = 'payment'").await.unwrap();
        execute(&store, "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only").await.unwrap();
        execute(&store, "DELETE FROM outbox").await.unwrap();

        let report = store.reconcile(RETENTION).await.unwrap();
        assert!(!report.is_clean());
        let failed: Vec<(&str, i64, &[String])> =
            report.findings.iter().filter(|f| f.count > 0).map(|f| (f.check, f.count, f.examples.as_slice())).collect();
        assert_eq!(failed.len(), 3, "{report}");
        assert!(
            failed[0].0.starts_with("every balance") && failed[0].2[0].contains("account u1: balance 70"),
            "{report}"
        );
        assert!(
            failed[1].0.starts_with("every payment has its ledger entry") && failed[1].2 == ["order o1"],
            "{report}"
        );
        assert!(failed[2].0.contains("outbox row") && failed[2].2 == ["order o1"], "{report}");
        // Payments older than the outbox retention may have lost their row to retention.
        let report = store.reconcile(Duration::ZERO).await.unwrap();
        assert_eq!(report.findings.iter().filter(|f| f.count > 0).count(), 2, "{report}");
    });
}

#[test]
fn the_schema_check_refuses_a_database_behind_this_build() {
    block_on(async {
        let store = fresh_store(2).await;
        store.check_schema().await.expect("a migrated database is current");
        execute(&store, "DELETE FROM _sqlx_migrations WHERE version = 20261127000001").await.unwrap();
        let refused = store.check_schema().await.expect_err("a missing migration refuses the start");
        assert!(refused.to_string().contains("20261127000001"), "{refused}");
    });
}
