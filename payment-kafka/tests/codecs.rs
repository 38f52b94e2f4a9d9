//! Every codec a producer may compress `pay.order` with is read (SPEC §4, issue 17): batches
//! produced with `compression.codec` none, gzip, snappy, lz4 and zstd each get every command paid
//! and published. Before this build, zstd records stalled their partition for ever.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{funded, json, pay, until, Broker};
use payment_core::memory::MemoryStore;
use payment_core::testing::block_on;
use payment_core::Payments;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Commands per codec, sent together so the producer batches (and compresses) them.
const COMMANDS_PER_CODEC: usize = 6;

#[test]
fn batches_in_every_codec_are_paid() {
    block_on(async {
        let broker = Broker::start();
        let store = MemoryStore::new();
        let payments = Payments::new(store.clone());
        let users: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        funded(&payments, &users, "1000").await;
        let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
        let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());

        let mut expected = BTreeSet::new();
        for codec in CODECS {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &broker.config.brokers)
                .set("compression.codec", codec)
                // Long enough that the commands sent together leave as one batch per partition.
                .set("linger.ms", "100")
                .create()
                .unwrap_or_else(|e| panic!("{codec} producer: {e}"));
            let commands: Vec<_> = (0..COMMANDS_PER_CODEC)
                .map(|i| {
                    let order = format!("{codec}-o{i}");
                    expected.insert(order.clone());
                    pay(&format!("{codec}-m{i}"), &order, &users[i % users.len()], "2.5")
                })
                .collect();
            let sends = commands.iter().map(|(key, payload)| {
                let record = FutureRecord::to(&broker.config.topics.pay_order).key(key).payload(payload);
                producer.send(record, Duration::from_secs(10))
            });
            for delivery in futures::future::join_all(sends).await {
                delivery.unwrap_or_else(|(e, _)| panic!("{codec}: produce: {e}"));
            }
        }

        let total = CODECS.len() * COMMANDS_PER_CODEC;
        let snapshot = until(&store, "every command of every codec paid", |s| s.payments.len() == total).await;
        let events = broker.published(|seen| seen.len() >= total).await;
        let paid: BTreeSet<String> =
            events.iter().filter_map(|e| json(e)["order_id"].as_str().map(str::to_string)).collect();
        assert_eq!(paid, expected, "one order.paid per command, whatever its codec");
        assert!(snapshot.dead_letters.is_empty(), "nothing was dead-lettered");
        snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        consumer.stop().await;
        publisher.stop().await;
    });
}
