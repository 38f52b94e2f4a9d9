//! Refunds end to end: the real `payment-service` binary on PostgreSQL and a Kafka-protocol
//! broker (librdkafka's mock cluster), driven by the orders simulator, which pays orders (with
//! redeliveries and re-sends), then refunds half of the paid ones — some whole, some partially
//! (some of those re-sent), some in two parts and then once more — and verifies every outcome and
//! every balance (deposit − payments + refunds).

#[allow(dead_code)] // this binary uses a subset of the harness
mod harness;

use std::time::Duration;

use harness::{one_at_a_time, Service};
use orders_simulator::{prepare, run, Plan, Target};

#[test]
fn the_simulator_refunds_half_of_the_paid_orders_and_every_balance_adds_up() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let cluster = harness::broker(4);
        let brokers = cluster.bootstrap_servers();
        let database_url = payment_postgres::testing::fresh_database().await;
        let env = [
            ("DATABASE_URL", database_url.as_str()),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("OUTBOX_POLL_MS", "200"),
            ("KAFKA_FETCH_WAIT_MAX_MS", "10"),
        ];
        let service = Service::spawn("refunds", &env);
        service.wait_ready(&reqwest::Client::new(), Duration::from_secs(60)).await;
        let plan = Plan {
            orders: 1_000,
            users: 40,
            duplicate_ratio: 0.2,
            resend_ratio: 0.1,
            refund_ratio: 0.5,
            seed: 22,
            ..Plan::default()
        };
        let target = Target::new(&service.base_url, &brokers);
        let accounts = prepare(&target, &plan).await.expect("accounts and deposits");
        let report = run(&target, &plan, &accounts, |_| {}).await.expect("the simulator ran");
        println!("{report}");
        assert!(report.passed(), "{:#?}", report.violations.iter().take(20).collect::<Vec<_>>());
        assert!(report.refunded > 100 && report.refunds_produced > report.refunded, "{report}");
        assert!(report.refund_failed.get("exceeds_refundable").is_some_and(|n| *n > 10), "{report}");
        assert_eq!(service.log_count("panicked"), 0, "{}", service.log_tail());
    });
}
