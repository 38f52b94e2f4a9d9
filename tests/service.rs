//! End to end: the composed service on PostgreSQL and a Kafka-protocol broker, driven over HTTP
//! and Kafka as a shop would, then stopped gracefully.

use std::time::{Duration, Instant};

use clap::Parser;
use payment_service::{process, Settings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

#[test]
fn a_shop_pays_an_order_end_to_end() {
    payment_core::testing::block_on(async {
        let cluster = MockCluster::new(1).unwrap();
        for topic in payment_kafka::Topics::default().all() {
            cluster.create_topic(topic, 2, 1).unwrap();
        }
        let brokers = cluster.bootstrap_servers();
        let database = payment_postgres::testing::fresh_database().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port();
        let settings = Settings::try_parse_from([
            "payment-service",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &database,
            "--kafka-brokers",
            &brokers,
            "--kafka-property",
            "session.timeout.ms=6000",
            // The shared test server runs with fsync off, for speed.
            "--database-allow-lost-commits",
            "true",
        ])
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The service future holds no embedded broker here, but is not Send; run it beside the
        // scenario on this task.
        let service = process::run(settings, None, async {
            let _ = stopped.await;
        });
        let scenario = async move {
            let http = reqwest::Client::new();
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while http.get(format!("{base}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
                assert!(Instant::now() < deadline, "service not ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let created = http.post(format!("{base}/accounts")).header("x-user-id", "shopper").send().await.unwrap();
            assert_eq!(created.status(), 201);
            let deposit = http
                .post(format!("{base}/accounts/deposit"))
                .header("x-user-id", "shopper")
                .json(&serde_json::json!({"amount": "25.50"}))
                .send()
                .await
                .unwrap();
            assert_eq!(deposit.status(), 200);

            let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
            let command = r#"{"message_id":"e2e-1","order_id":"order-1","user_id":"shopper","amount":10.25}"#;
            producer
                .send(FutureRecord::to("pay.order").key("shopper").payload(command), Duration::from_secs(10))
                .await
                .unwrap();

            let reader: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "e2e-reader")
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            reader.subscribe(&["order.paid"]).unwrap();
            let event = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await.unwrap().unwrap().detach();
            let body: serde_json::Value = serde_json::from_slice(event.payload().unwrap_or_default()).unwrap();
            assert_eq!((body["order_id"].as_str(), body["status"].as_str()), (Some("order-1"), Some("success")));
            assert_eq!(event.key(), Some(&b"order-1"[..]));

            let shopper_reads = |path: &'static str| {
                let request = http.get(format!("{base}{path}")).header("x-user-id", "shopper");
                async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
            };
            assert_eq!(shopper_reads("/accounts/balance").await["balance"].to_string(), "15.25");
            assert_eq!(shopper_reads("/accounts/ledger").await["entries"][0]["order_id"], "order-1");

            let _ = stop.send(());
        };
        let (finished, ()) = tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(service, scenario) })
            .await
            .expect("the scenario and the shutdown finish in time");
        assert!(finished.is_ok(), "graceful shutdown: {finished:?}");
    });
}
