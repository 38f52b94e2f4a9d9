//! Producing the `pay.order` messages of a workload, keyed by order id, each with a `traceparent`
//! in its order's trace, at the plan's rate or flat out, and remembering when each order was first
//! sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::{Plan, SimError, Target, Workload};

/// How long librdkafka may try to deliver one message, e.g. through a broker outage.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause when the client's local queue is full, before offering the message again.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// Produces every message; `produced` counts the ones handed to the client. Returns, per order,
/// when its first message was handed over. Waits for every delivery report.
pub(crate) async fn produce(
    target: &Target,
    plan: &Plan,
    workload: &Workload,
    produced: &AtomicUsize,
    on_progress: impl Fn(),
) -> Result<Vec<Option<Instant>>, SimError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &target.brokers)
        // The only duplicates are the ones the plan asks for.
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
        .set("linger.ms", "5")
        .create()?;
    let mut first_sent = vec![None; workload.orders.len()];
    let mut deliveries: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(workload.messages.len());
    let started = tokio::time::Instant::now();
    for (index, message) in workload.messages.iter().enumerate() {
        if let Some(rate) = plan.rate_per_sec {
            // Paced against the start, not the previous send, so timer granularity does not
            // lower the average rate.
            let due = started + Duration::from_secs_f64(index as f64 / f64::from(rate));
            tokio::time::sleep_until(due).await;
        }
        let order = &workload.orders[message.order];
        let key = order.key();
        // Each message a span of the order's trace; the outcome event must continue that trace.
        let traceparent = format!("00-{}-{:016x}-01", order.trace_id(), index as u64 + 1);
        let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&traceparent) });
        let record = FutureRecord::to(&target.topics.pay_order)
            .key(key.as_str())
            .payload(message.payload.as_slice())
            .headers(headers);
        let delivery = enqueue(&producer, record)
            .await
            .map_err(|error| SimError::Produce { message_id: message.message_id.clone(), detail: error.to_string() })?;
        first_sent[message.order].get_or_insert_with(Instant::now);
        deliveries.push((index, delivery));
        produced.fetch_add(1, Ordering::Relaxed);
        on_progress();
    }
    for (index, delivery) in deliveries {
        let failure = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _))) => error.to_string(),
            Err(_cancelled) => "the producer dropped the delivery report".to_string(),
        };
        return Err(SimError::Produce { message_id: workload.messages[index].message_id.clone(), detail: failure });
    }
    Ok(first_sent)
}

/// Produces the refund commands in order, keyed by order id (so the refunds of one order are
/// applied in the order planned), and waits for every delivery report.
pub(crate) async fn produce_refunds(
    target: &Target,
    orders: &[crate::Order],
    refunds: &[crate::RefundCommand],
) -> Result<(), SimError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &target.brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
        .create()?;
    let mut deliveries = Vec::with_capacity(refunds.len());
    for refund in refunds {
        let key = orders[refund.order].key();
        let record = FutureRecord::to(&target.topics.refund_order).key(key.as_str()).payload(refund.payload.as_slice());
        let delivery = enqueue(&producer, record)
            .await
            .map_err(|error| SimError::Produce { message_id: refund.message_id.clone(), detail: error.to_string() })?;
        deliveries.push((refund, delivery));
    }
    for (refund, delivery) in deliveries {
        let failure = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _))) => error.to_string(),
            Err(_cancelled) => "the producer dropped the delivery report".to_string(),
        };
        return Err(SimError::Produce { message_id: refund.message_id.clone(), detail: failure });
    }
    Ok(())
}

/// Hands `record` to the producer, waiting while its local queue is full (a flat-out run fills
/// it faster than the broker drains it); any other refusal is returned.
pub async fn enqueue(
    producer: &FutureProducer,
    record: FutureRecord<'_, str, [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    let mut record = record;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}
