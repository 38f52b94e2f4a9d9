//! `payment-service outbox parked` and `outbox requeue [--since]` on PostgreSQL: a parked row is
//! listed with its error, re-queued (all, or only those parked since a time) and unpublished again
//! for the publisher (issue 18 (2)).

use clap::Parser;
use payment_core::ports::Outbox;
use payment_core::testing::contract::pay;
use payment_core::Payments;
use payment_service::commands::Command;
use payment_service::Settings;

async fn run(store: &payment_postgres::PgStore, args: &[&str]) -> String {
    let settings = Settings::try_parse_from(["payment-service"].iter().chain(args)).unwrap_or_else(|e| panic!("{e}"));
    let Some(Command::Outbox(command)) = settings.command else { panic!("an outbox command: {args:?}") };
    let mut out = Vec::new();
    command.run_on(store, &mut out).await.unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn parked_rows_are_listed_and_requeued_by_the_operator_commands() {
    payment_core::testing::block_on(async {
        let store = payment_postgres::testing::fresh_store(4).await;
        let payments = Payments::new(store.clone());
        let user = payment_core::domain::UserId::new("u1").unwrap_or_else(|e| panic!("{e}"));
        payments.create_account(&user).await.unwrap_or_else(|e| panic!("{e}"));
        payments
            .deposit(&user, "10".parse().unwrap_or_else(|e| panic!("{e}")), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            payments
                .pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let rows = store.unpublished(10).await.unwrap_or_else(|e| panic!("{e}"));
        store.park(rows[0].id, "Broker: Message size too large").await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let between = chrono::Utc::now().to_rfc3339();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        store.park(rows[2].id, "Broker: Invalid record").await.unwrap_or_else(|e| panic!("{e}"));

        let listed = run(&store, &["outbox", "parked"]).await;
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(lines.len(), 3, "{listed}");
        assert!(lines[0].starts_with(&format!("id={} topic=order.paid key=o-0 ", rows[0].id)), "{listed}");
        assert!(lines[0].ends_with("error=Broker: Message size too large"), "{listed}");
        assert!(lines[1].contains("key=o-2"), "{listed}");
        assert_eq!(lines[2], "2 of 2 parked rows listed");

        assert_eq!(run(&store, &["outbox", "requeue", "--since", &between]).await, "1 parked rows re-queued\n");
        let waiting: Vec<i64> =
            store.unpublished(10).await.unwrap_or_else(|e| panic!("{e}")).iter().map(|r| r.id).collect();
        assert_eq!(waiting, [rows[1].id, rows[2].id], "the row parked since is back");
        assert_eq!(run(&store, &["outbox", "requeue"]).await, "1 parked rows re-queued\n");
        assert_eq!(store.parked().await.ok(), Some(0));
        assert_eq!(store.backlog().await.ok(), Some(3));
    });
}
