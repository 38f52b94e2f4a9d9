//! Listening to `order.paid`, `order.payment_failed`, `order.refunded` and `order.refund_failed`: a thread that owns a Kafka consumer in
//! its own group, from the earliest offset, and hands every record over as an [`OutcomeEvent`].
//!
//! A thread blocked in `poll` rather than rdkafka's `StreamConsumer`: the service's README
//! records `recv` futures sleeping through a backlog because librdkafka wakes them only when its
//! queue goes from empty to non-empty; a poll loop has no wake-up to lose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{SimError, Target};

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Which outcome topic an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Paid,
    Failed,
    Refunded,
    RefundFailed,
}

/// One outcome record as received.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeEvent {
    pub kind: OutcomeKind,
    /// The record key as UTF-8, if any.
    pub key: Option<String>,
    /// The `event-id` header, if any.
    pub event_id_header: Option<String>,
    /// The trace id of the `traceparent` header, if any.
    pub trace_id: Option<String>,
    /// The payload as JSON; `Value::Null` when it is not JSON.
    pub body: Value,
    pub received_at: Instant,
}

/// The consumer thread, and the channel it fills.
pub(crate) struct Listener {
    pub(crate) events: mpsc::UnboundedReceiver<OutcomeEvent>,
    assigned: Option<oneshot::Receiver<()>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Subscribes before returning, so nothing produced afterwards can be missed; a fresh group
    /// with `auto.offset.reset=earliest` also reads whatever was published before the assignment.
    pub(crate) fn start(target: &Target, group_id: &str) -> Result<Self, SimError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &target.brokers)
            .set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            // A measuring tool: a broker that holds empty fetches (the mock cluster) must not
            // add its wait to the latencies.
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            // Outcome topics may not exist until the service first publishes: notice them soon.
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create()?;
        let topics = [
            target.topics.order_paid.as_str(),
            target.topics.order_payment_failed.as_str(),
            target.topics.order_refunded.as_str(),
            target.topics.order_refund_failed.as_str(),
        ];
        // Every partition from its beginning, without a consumer group, when the topics exist:
        // joining a fresh group on librdkafka's mock cluster now and then took 30 s, during
        // which no outcome was read and every latency grew by as much. The group (and
        // `auto.offset.reset=earliest`) is only the fallback for topics not created yet.
        match all_partitions(&consumer, &topics) {
            Some(partitions) => consumer.assign(&partitions)?,
            None => consumer.subscribe(&topics)?,
        }
        let kinds = vec![
            (target.topics.order_paid.clone(), OutcomeKind::Paid),
            (target.topics.order_refunded.clone(), OutcomeKind::Refunded),
            (target.topics.order_refund_failed.clone(), OutcomeKind::RefundFailed),
        ];
        let (sender, events) = mpsc::unbounded_channel();
        let (announce, assigned) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("outcomes".into())
            .spawn(move || poll_loop(consumer, &kinds, &sender, announce, &stopping))
            .map_err(|error| SimError::Consumer(error.to_string()))?;
        Ok(Self { events, assigned: Some(assigned), stop, thread: Some(thread) })
    }

    /// Waits, at most `limit`, until the group has given this consumer its partitions, so that
    /// latencies measure the service rather than this consumer's join. Returns at once when an
    /// outcome topic does not exist yet (nothing to be assigned until the service publishes).
    pub(crate) async fn assigned(&mut self, limit: Duration) {
        if let Some(assigned) = self.assigned.take() {
            if tokio::time::timeout(limit, assigned).await.is_err() {
                tracing::warn!(?limit, "outcome consumer not assigned yet; producing anyway");
            }
        }
    }

    /// Stops the thread (the consumer leaves its group as it is dropped).
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("outcome consumer thread panicked");
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.halt();
    }
}

fn poll_loop(
    consumer: BaseConsumer,
    kinds: &[(String, OutcomeKind)],
    sender: &mpsc::UnboundedSender<OutcomeEvent>,
    announce: oneshot::Sender<()>,
    stop: &AtomicBool,
) {
    let mut announce = Some(announce);
    if !topics_exist(&consumer) {
        tell_assigned(&mut announce);
    }
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(POLL_TIMEOUT);
        if announce.is_some() && consumer.assignment().is_ok_and(|assignment| assignment.count() > 0) {
            tell_assigned(&mut announce);
        }
        match polled {
            None => {}
            // Broker outages and not-yet-created topics: the client recovers on its own.
            Some(Err(error)) => tracing::debug!(%error, "outcome consumer"),
            Some(Ok(record)) => {
                let kind = kinds
                    .iter()
                    .find(|(topic, _)| topic == record.topic())
                    .map_or(OutcomeKind::Failed, |(_, kind)| *kind);
                let key = record.key().map(|key| String::from_utf8_lossy(key).into_owned());
                let event_id_header = record.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|header| header.key == "event-id")
                        .and_then(|header| header.value)
                        .map(|value| String::from_utf8_lossy(value).into_owned())
                });
                let trace_id = record.headers().and_then(|headers| {
                    let value = headers.iter().find(|header| header.key == "traceparent")?.value?;
                    String::from_utf8_lossy(value).split('-').nth(1).map(str::to_string)
                });
                let body = record.payload().and_then(|bytes| serde_json::from_slice(bytes).ok()).unwrap_or(Value::Null);
                let event = OutcomeEvent { kind, key, event_id_header, trace_id, body, received_at: Instant::now() };
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    }
}

fn tell_assigned(announce: &mut Option<oneshot::Sender<()>>) {
    if let Some(announce) = announce.take() {
        // Nobody waiting any more is fine: the run went on without the assignment.
        let _ = announce.send(());
    }
}

/// Every partition of `topics` at its beginning, or `None` when a topic is missing or empty.
fn all_partitions(consumer: &BaseConsumer, topics: &[&str]) -> Option<TopicPartitionList> {
    let metadata = consumer.fetch_metadata(None, METADATA_TIMEOUT).ok()?;
    let mut list = TopicPartitionList::new();
    for name in topics {
        let topic = metadata.topics().iter().find(|topic| topic.name() == *name)?;
        if topic.error().is_some() || topic.partitions().is_empty() {
            return None;
        }
        for partition in topic.partitions() {
            list.add_partition_offset(name, partition.id(), Offset::Beginning).ok()?;
        }
    }
    Some(list)
}

fn topics_exist(consumer: &BaseConsumer) -> bool {
    match consumer.subscription() {
        // Assigned, not subscribed: the topics exist. (rdkafka's `elements` on an empty list
        // builds a slice from a null pointer, so it is not called on one.)
        Ok(subscription) if subscription.count() == 0 => true,
        Ok(subscription) => subscription.elements().iter().all(|element| {
            consumer.fetch_metadata(Some(element.topic()), METADATA_TIMEOUT).is_ok_and(|metadata| {
                metadata.topics().iter().all(|topic| topic.error().is_none() && !topic.partitions().is_empty())
            })
        }),
        Err(_) => false,
    }
}
