//! What only PostgreSQL can show about refunds: a batch mixing payments and refunds costs the
//! statements of a batch of one refund whatever its size and mix, and the schema refuses a second
//! credit for a refund id, a refund of an order never paid, and refunds over the payment, when
//! the code is bypassed.

use payment_core::app::Payments;
use payment_core::decide::Outcome;
use payment_core::domain::{Amount, Inbound, MessageId, OrderId, PayOrder, RefundId, RefundOrder, UserId};
use payment_core::testing::{block_on, Inspect};
use payment_postgres::testing::fresh_store;
use payment_postgres::PgStore;

fn pay(id: &str, order: &str, user: &str, amount: &str) -> Inbound {
    let order =
        PayOrder::new(OrderId::new(order).unwrap(), UserId::new(user).unwrap(), amount.parse::<Amount>().unwrap());
    Inbound::pay(MessageId::new(id).unwrap(), order)
}

fn refund(id: &str, refund: &str, order: &str, user: &str, amount: Option<&str>) -> Inbound {
    let command = RefundOrder::new(
        RefundId::new(refund).unwrap(),
        OrderId::new(order).unwrap(),
        UserId::new(user).unwrap(),
        amount.map(|a| a.parse::<Amount>().unwrap()),
    );
    Inbound::refund(MessageId::new(id).unwrap(), command)
}

async fn funded(store: &PgStore, users: &[String], amount: &str) -> Payments<PgStore> {
    let payments = Payments::new(store.clone());
    for user in users {
        let user = UserId::new(user.as_str()).unwrap();
        payments.create_account(&user).await.unwrap();
        payments.deposit(&user, amount.parse().unwrap(), None).await.unwrap();
    }
    payments
}

#[test]
fn a_mixed_batch_of_1000_costs_the_statements_of_one_refund() {
    block_on(async {
        let store = fresh_store(4).await;
        let users: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let payments = funded(&store, &users, "1000").await;
        // 500 orders paid beforehand, to be refunded by the mixed batch.
        let earlier: Vec<_> = (0..500).map(|i| pay(&format!("e{i}"), &format!("e{i}"), &users[i % 50], "2")).collect();
        payments.pay_orders(&earlier).await.unwrap();
        payments.pay_orders(&[pay("single-pay", "single", "u0", "1")]).await.unwrap();
        // Payments, partial refunds of earlier orders, whole refunds of orders paid earlier in the
        // same batch, interleaved.
        let mixed: Vec<_> = (0..250)
            .flat_map(|i| {
                let user = &users[i % 50];
                [
                    pay(&format!("p{i}"), &format!("o{i}"), user, "1"),
                    refund(&format!("r{i}"), &format!("r{i}"), &format!("e{i}"), user, Some("0.5")),
                    refund(&format!("s{i}"), &format!("s{i}"), &format!("e{}", 250 + i), user, None),
                    refund(&format!("t{i}"), &format!("t{i}"), &format!("o{i}"), user, None),
                ]
            })
            .collect();

        let start = store.statements_executed();
        let one = payments.pay_orders(&[refund("single-refund", "single", "single", "u0", None)]).await.unwrap();
        let for_one = store.statements_executed() - start;
        let start = store.statements_executed();
        let outcomes = payments.pay_orders(&mixed).await.unwrap();
        let for_mixed = store.statements_executed() - start;

        assert!(matches!(one[0], Outcome::Refunded { .. }), "{one:?}");
        let refunded = outcomes.iter().filter(|o| matches!(o, Outcome::Refunded { .. })).count();
        let paid = outcomes.iter().filter(|o| matches!(o, Outcome::Paid { .. })).count();
        assert_eq!((paid, refunded), (250, 750), "every command applied");
        assert_eq!(for_one, 8, "BEGIN, claim, lock accounts, lock orders, load payments, load refunds, apply, COMMIT");
        assert_eq!(for_mixed, for_one);
        let snapshot = store.snapshot().await;
        snapshot.check_invariants().unwrap();
        assert_eq!(snapshot.refunds.len(), 751);
    });
}

#[test]
fn the_schema_refuses_a_second_credit_an_unpaid_order_and_refunds_over_the_payment() {
    block_on(async {
        let store = fresh_store(2).await;
        let payments = funded(&store, &["u1".to_string()], "10").await;
        payments.pay_orders(&[pay("m1", "o1", "u1", "4"), refund("m2", "r1", "o1", "u1", Some("1"))]).await.unwrap();
        let again = sqlx::query(
            "INSERT INTO refunds (refund_id, order_id, user_id, amount, refundable_left, transaction_id, event_id, refunded_at)
             VALUES ('r1', 'o1', 'u1', 1, 2, gen_random_uuid(), gen_random_uuid(), now())",
        )
        .execute(store.pool())
        .await;
        assert!(again.is_err(), "a refund id is credited once: {again:?}");
        let unpaid = sqlx::query(
            "INSERT INTO refunds (refund_id, order_id, user_id, amount, refundable_left, transaction_id, event_id, refunded_at)
             VALUES ('r2', 'nope', 'u1', 1, 0, gen_random_uuid(), gen_random_uuid(), now())",
        )
        .execute(store.pool())
        .await;
        assert!(unpaid.is_err(), "a refund is linked to a payment: {unpaid:?}");
        let unlinked = sqlx::query(
            "INSERT INTO ledger_entries (entry_id, user_id, kind, amount, balance_after, order_id, created_at)
             VALUES (gen_random_uuid(), 'u1', 'refund', 1, 8, 'o1', now())",
        )
        .execute(store.pool())
        .await;
        assert!(unlinked.is_err(), "a refund entry names its refund: {unlinked:?}");
        let over = sqlx::query(
            "INSERT INTO refunds (refund_id, order_id, user_id, amount, refundable_left, transaction_id, event_id, refunded_at)
             VALUES ('r3', 'o1', 'u1', 3.01, 0, gen_random_uuid(), gen_random_uuid(), now())",
        )
        .execute(store.pool())
        .await;
        assert!(over.is_err(), "refunds of an order never exceed its payment (4, 1 refunded): {over:?}");
        let exact = sqlx::query(
            "INSERT INTO refunds (refund_id, order_id, user_id, amount, refundable_left, transaction_id, event_id, refunded_at)
             VALUES ('r3', 'o1', 'u1', 3, 0, gen_random_uuid(), gen_random_uuid(), now())",
        )
        .execute(store.pool())
        .await;
        assert!(exact.is_ok(), "up to the payment itself: {exact:?}");
    });
}
