//! A standalone Kafka-protocol broker (librdkafka's mock cluster) that outlives the service, so
//! the simulator can be run while the service is killed and restarted:
//! `cargo run -p orders-simulator --example mock-broker` prints `bootstrap_servers=...` and
//! serves until killed.

use rdkafka::mocking::MockCluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(1)?;
    for topic in ["pay.order", "order.paid", "order.payment_failed", "pay.order.dlq"] {
        cluster.create_topic(topic, 4, 1)?;
    }
    println!("bootstrap_servers={}", cluster.bootstrap_servers());
    loop {
        std::thread::park();
    }
}
