//! What only PostgreSQL can show: the schema holds when the code is bypassed, migrations are
//! idempotent, a killed transaction leaves nothing, a batch costs a constant number of
//! statements, and a parked outbox row is re-queued by the documented SQL.

use std::time::Duration;

use payment_core::app::{DepositBatching, Payments};
use payment_core::decide::Outcome;
use payment_core::domain::{Amount, IdempotencyKey, Inbound, MessageId, OrderId, PayOrder, UserId};
use payment_core::ports::Outbox;
use payment_core::testing::{block_on, Inspect};
use payment_postgres::testing::fresh_store;
use payment_postgres::PgStore;
use sqlx::Row;

fn command(id: &str, order: &str, user: &str, amount: &str) -> Inbound {
    let order =
        PayOrder::new(OrderId::new(order).unwrap(), UserId::new(user).unwrap(), amount.parse::<Amount>().unwrap());
    Inbound::pay(MessageId::new(id).unwrap(), order)
}

async fn funded(store: &PgStore, users: &[&str], amount: &str) -> Payments<PgStore> {
    let payments = Payments::new(store.clone());
    for user in users {
        let user = UserId::new(*user).unwrap();
        payments.create_account(&user).await.unwrap();
        payments.deposit(&user, amount.parse().unwrap(), None).await.unwrap();
    }
    payments
}

#[test]
fn migrations_applied_twice_are_a_no_op() {
    block_on(async {
        let store = fresh_store(2).await;
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(store.pool()).await.unwrap()
        };
        let before = count().await;
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(count().await, before);
        assert!(before >= 1);
    });
}

#[test]
fn schema_refuses_a_negative_balance_when_the_code_is_bypassed() {
    block_on(async {
        let store = fresh_store(2).await;
        funded(&store, &["u1"], "5").await;
        let error = sqlx::query("UPDATE accounts SET balance = balance - 6 WHERE user_id = 'u1'")
            .execute(store.pool())
            .await
            .expect_err("a negative balance must be refused by the schema");
        assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some("23514"), "{error}");
        let too_precise =
            sqlx::query("UPDATE accounts SET balance = 1.001 WHERE user_id = 'u1'").execute(store.pool()).await;
        assert!(too_precise.is_err());
        assert_eq!(store.snapshot().await.balance("u1"), Some(5.into()));
    });
}

#[test]
fn schema_refuses_a_second_payment_for_an_order_when_the_code_is_bypassed() {
    block_on(async {
        let store = fresh_store(2).await;
        let payments = funded(&store, &["u1"], "5").await;
        payments.pay_orders(&[command("m1", "o1", "u1", "1")]).await.unwrap();
        let error = sqlx::query(
            "INSERT INTO payments (order_id, user_id, amount, transaction_id, event_id, paid_at)
             VALUES ('o1', 'u1', 1, gen_random_uuid(), gen_random_uuid(), now())",
        )
        .execute(store.pool())
        .await
        .expect_err("a second payment must be refused by the schema");
        assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some("23505"), "{error}");
    });
}

#[test]
fn opposite_lock_orders_never_deadlock_to_the_caller() {
    block_on(async {
        let store = fresh_store(8).await;
        let users: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let payments = funded(&store, &names, "100").await;
        for round in 0..10 {
            let forward: Vec<_> =
                users.iter().map(|u| command(&format!("f{round}-{u}"), &format!("f{round}-{u}"), u, "1")).collect();
            let backward: Vec<_> = users
                .iter()
                .rev()
                .map(|u| command(&format!("b{round}-{u}"), &format!("b{round}-{u}"), u, "1"))
                .collect();
            let (p1, p2) = (payments.clone(), payments.clone());
            let (a, b) = tokio::join!(
                tokio::spawn(async move { p1.pay_orders(&forward).await }),
                tokio::spawn(async move { p2.pay_orders(&backward).await })
            );
            assert!(a.unwrap().is_ok() && b.unwrap().is_ok(), "round {round}");
        }
        let snapshot = store.snapshot().await;
        snapshot.check_invariants().unwrap();
        assert!(users.iter().all(|u| snapshot.balance(u) == Some(80.into())));
    });
}

#[test]
fn a_transaction_killed_mid_way_leaves_nothing() {
    block_on(async {
        let store = fresh_store(4).await;
        let payments = funded(&store, &["u1"], "10").await;
        let before = store.snapshot().await;
        // Hold the account so the batch stops half-way: inbox claimed, waiting for the lock.
        let mut blocker = store.pool().begin().await.unwrap();
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = 'u1' FOR UPDATE").execute(&mut *blocker).await.unwrap();
        let batch = vec![command("m1", "o1", "u1", "4")];
        let running = {
            let (payments, batch) = (payments.clone(), batch.clone());
            tokio::spawn(async move { payments.pay_orders(&batch).await })
        };
        let pid = loop {
            let waiting = sqlx::query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
            )
            .fetch_optional(store.pool())
            .await
            .unwrap();
            if let Some(row) = waiting {
                break row.get::<i32, _>("pid");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let killed: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(store.pool()).await.unwrap();
        assert!(killed);
        let result = running.await.unwrap();
        assert!(result.is_err(), "the batch must fail, not half-succeed: {result:?}");
        blocker.rollback().await.unwrap();
        assert_eq!(store.snapshot().await, before, "nothing of the killed transaction persists");
        // The same batch, delivered again, is applied once.
        let outcomes = payments.pay_orders(&batch).await.unwrap();
        assert!(matches!(outcomes[0], Outcome::Paid { .. }));
        assert_eq!(store.snapshot().await.balance("u1"), Some(6.into()));
    });
}

#[test]
fn a_batch_of_1000_costs_the_statements_of_a_batch_of_1() {
    block_on(async {
        let store = fresh_store(4).await;
        let users: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let payments = funded(&store, &names, "1000").await;
        let one = vec![command("single", "single", "u0", "1")];
        let thousand: Vec<_> =
            (0..1000).map(|i| command(&format!("m{i}"), &format!("o{i}"), &users[i % 50], "0.5")).collect();

        let start = store.statements_executed();
        payments.pay_orders(&one).await.unwrap();
        let for_one = store.statements_executed() - start;
        let start = store.statements_executed();
        let outcomes = payments.pay_orders(&thousand).await.unwrap();
        let for_thousand = store.statements_executed() - start;

        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Paid { .. })));
        assert_eq!(for_one, 7, "BEGIN, claim, lock accounts, lock orders, load payments, apply, COMMIT");
        assert_eq!(for_thousand, for_one);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'payment'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1001);
    });
}

#[test]
fn a_batch_of_64_deposits_costs_the_statements_of_one() {
    block_on(async {
        let store = fresh_store(4).await;
        let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let alone = funded(&store, &names, "1").await.with_deposit_batching(DepositBatching::OFF);
        let together = alone.clone().with_deposit_batching(DepositBatching {
            max_requests: 64,
            linger: Duration::from_secs(5),
            group_commit: false,
        });
        let key = |k: &str| Some(IdempotencyKey::new(k).unwrap());

        let start = store.statements_executed();
        alone.deposit(&UserId::new("u0").unwrap(), "1".parse().unwrap(), key("first").as_ref()).await.unwrap();
        let for_one = store.statements_executed() - start;

        let start = store.statements_executed();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (payments, user) = (together.clone(), UserId::new(users[i % 8].clone()).unwrap());
                // Every other deposit retries one key of its user; the stored key of u0 replays.
                let key = match i % 2 {
                    0 => key(if i % 8 == 0 { "first" } else { "again" }),
                    _ => None,
                };
                tokio::spawn(async move { payments.deposit(&user, "1".parse().unwrap(), key.as_ref()).await })
            })
            .collect();
        let mut credited = 0;
        for task in tasks {
            credited += usize::from(!task.await.unwrap().unwrap().replayed);
        }
        let for_batch = store.statements_executed() - start;

        assert_eq!(for_one, 5, "BEGIN, lock, load keys, apply, COMMIT");
        assert_eq!(for_batch, for_one, "64 deposits, one unit of work");
        assert_eq!(credited, 32 + 3, "unkeyed ones, and one per new (user, key): u2, u4, u6");
        let snapshot = store.snapshot().await;
        snapshot.check_invariants().unwrap();
        let total: rust_decimal::Decimal = users.iter().filter_map(|u| snapshot.balance(u)).sum();
        assert_eq!(total, (8 + 1 + credited).into());
    });
}

#[test]
fn a_parked_row_is_requeued_by_the_documented_update() {
    block_on(async {
        let store = fresh_store(2).await;
        let payments = funded(&store, &["u1"], "10").await;
        payments.pay_orders(&[command("m1", "o1", "u1", "1"), command("m2", "o2", "u1", "1")]).await.unwrap();
        let rows = store.unpublished(10).await.unwrap();
        store.park(rows[0].id, "Broker: Unknown topic or partition").await.unwrap();
        let (failed_at, error): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
            sqlx::query_as("SELECT publish_failed_at, publish_error FROM outbox WHERE id = $1")
                .bind(rows[0].id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(failed_at.is_some());
        assert_eq!(error.as_deref(), Some("Broker: Unknown topic or partition"));
        let half_parked = sqlx::query("UPDATE outbox SET publish_error = NULL WHERE id = $1")
            .bind(rows[0].id)
            .execute(store.pool())
            .await
            .expect_err("a parked row keeps its error");
        assert_eq!(half_parked.as_database_error().and_then(|e| e.code()).as_deref(), Some("23514"));
        assert_eq!(store.unpublished(10).await.unwrap(), rows[1..]);

        // The statement the outbox port documents for operators.
        sqlx::query("UPDATE outbox SET publish_failed_at = NULL, publish_error = NULL WHERE id = $1")
            .bind(rows[0].id)
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(store.unpublished(10).await.unwrap(), rows, "back in the queue, in its place");
        assert_eq!((store.parked().await.unwrap(), store.backlog().await.unwrap()), (0, 2));
    });
}

/// The publisher's lock connection asks the server for TCP keepalives, so the lock of a leader
/// whose host vanished is released in seconds; the rest of the pool keeps the server's defaults.
#[test]
fn the_leader_lock_connection_has_tcp_keepalives() {
    use sqlx::ConnectOptions;
    block_on(async {
        let store = fresh_store(2).await;
        let mut leader = store.leader_connect_options().connect().await.unwrap();
        let setting = |name: &'static str| format!("SHOW {name}");
        for (name, expected) in [
            ("tcp_keepalives_idle", payment_postgres::LEADER_KEEPALIVE_IDLE_SECS),
            ("tcp_keepalives_interval", payment_postgres::LEADER_KEEPALIVE_INTERVAL_SECS),
            ("tcp_keepalives_count", payment_postgres::LEADER_KEEPALIVE_COUNT),
        ] {
            let value: String = sqlx::query_scalar(&setting(name)).fetch_one(&mut leader).await.unwrap();
            let value = value.trim_end_matches('s');
            assert_eq!(value, expected.to_string(), "{name} on the lock connection");
        }
        let pooled: String = sqlx::query_scalar("SHOW tcp_keepalives_idle").fetch_one(store.pool()).await.unwrap();
        assert_ne!(pooled.trim_end_matches('s'), payment_postgres::LEADER_KEEPALIVE_IDLE_SECS.to_string());
        let leading = store.try_lead().await.unwrap();
        assert!(leading.is_some(), "the lock is taken on such a connection");
    });
}
