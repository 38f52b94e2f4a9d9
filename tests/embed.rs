//! The embedding example, run as a host would run it: its own routes and fallback answer beside
//! the mounted accounts API, and a deposit and a `pay.order` go through.

#[allow(dead_code)]
#[path = "../examples/embed-in-axum.rs"]
mod embed;

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

#[test]
fn a_host_mounts_the_accounts_api_and_pays_an_order() {
    payment_core::testing::block_on(async {
        let cluster = MockCluster::new(1).unwrap();
        for topic in payment_kafka::Topics::default().all() {
            cluster.create_topic(topic, 2, 1).unwrap();
        }
        let brokers = cluster.bootstrap_servers();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let host = tokio::spawn(embed::serve(listener, brokers.clone(), metrics, shutdown.clone()));

        let http = reqwest::Client::new();
        let text = |path: &'static str| {
            let request = http.get(format!("{base}{path}"));
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(text("/").await, (200, "the shop".into()));
        assert_eq!(text("/healthz").await, (200, "the shop is alive".into()));
        assert_eq!(text("/nowhere").await, (404, "the shop has no such page".into()));

        let user = |request: reqwest::RequestBuilder| request.header("x-user-id", "7");
        assert_eq!(user(http.post(format!("{base}/payments/accounts"))).send().await.unwrap().status(), 201);
        let deposit = user(http.post(format!("{base}/payments/accounts/deposit")))
            .json(&serde_json::json!({"amount": "20.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(deposit.status(), 200);

        let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let command = r#"{"message_id":"embed-1","order_id":501,"user_id":7,"amount":"12.50"}"#;
        producer
            .send(FutureRecord::to("pay.order").key("501").payload(command), Duration::from_secs(10))
            .await
            .unwrap();
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "embed-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        reader.subscribe(&["order.paid"]).unwrap();
        let event = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await.unwrap().unwrap().detach();
        let body: serde_json::Value = serde_json::from_slice(event.payload().unwrap_or_default()).unwrap();
        assert_eq!((body["order_id"].as_u64(), body["user_id"].as_u64()), (Some(501), Some(7)), "{body}");

        let balance = user(http.get(format!("{base}/payments/accounts/balance"))).send().await.unwrap();
        let balance: serde_json::Value = balance.json().await.unwrap();
        assert_eq!(balance["balance"].to_string(), "7.5");
        let (_, metrics_text) = text("/metrics").await;
        assert!(metrics_text.contains("payment_"), "the host's registry carries the payment metrics");

        shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), host).await.expect("the host stops in time");
        assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    });
}
