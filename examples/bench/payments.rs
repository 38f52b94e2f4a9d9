//! Payments end to end: the orders simulator's workload (`Plan::workload`, accounts from
//! `prepare`) produced to `pay.order` here, flat out or paced, and every outcome event read back
//! by one reader that records, per order, produce → outcome and `paid_at` → readable.
//!
//! Why not `orders_simulator::run`: its outcome consumer keeps librdkafka's
//! `fetch.wait.max.ms` (500 ms), and librdkafka's mock broker, unlike Kafka, does not cut an
//! empty fetch's wait short when data arrives — each empty fetch parks the reader for the full
//! wait, which would then be most of every latency measured. This reader sets the wait itself
//! (see `BENCH_FETCH_WAIT_MS` in `bench.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use orders_simulator::{Latency, Plan};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::Fallible;

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct PaymentRun {
    pub orders: usize,
    pub paid: usize,
    /// Orders with an `order.payment_failed` (none expected: every user is funded).
    pub failed: usize,
    /// Outcome events beyond the first per order.
    pub extra_events: usize,
    /// From the first message produced to the last order's first outcome.
    pub elapsed: Duration,
    /// How long producing took (paced runs: close to orders / rate).
    pub producing: Duration,
    /// Produce (handed to the client) → outcome event read.
    pub latency: Latency,
    /// The latency's first part: produce → the event's `paid_at` (the broker, the service's fetch,
    /// the wait for a free lane and the batch's decision; wall clock of this machine).
    pub to_decided: Latency,
    /// `paid_at` → event read (wall clock of this machine on both sides).
    pub lag: Latency,
    /// The lag's first part: `paid_at` → the event handed to the publisher's producer (the
    /// record's create time, in milliseconds): the batch's apply and commit, and the publisher's
    /// wake-up and read.
    pub to_producer: Latency,
    /// The lag's second part: the producer's create time → event read: produce, the broker's
    /// acknowledgement and the reader's fetch.
    pub through_broker: Latency,
    /// From the moment every command was on the broker (and `after_producing` began: for a
    /// backlog, the service's start) to the first outcome read.
    pub first_outcome: Duration,
    /// From the first outcome read to the last: how long the backlog took to drain once the
    /// first batch had committed.
    pub drain: Duration,
}

impl PaymentRun {
    pub fn per_sec(&self) -> f64 {
        (self.paid + self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    /// Commands per second from the first outcome to the last (a backlog's drain rate).
    pub fn drained_per_sec(&self) -> f64 {
        (self.paid + self.failed) as f64 / self.drain.as_secs_f64()
    }
}

/// What a `pay.order` record is keyed by: the contract allows either. By order id, one user's
/// orders spread over every partition, so batches applied side by side lock the same accounts; by
/// user id, a user's orders share a partition, hence a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Order,
    User,
}

impl Key {
    pub fn name(self) -> &'static str {
        match self {
            Key::Order => "order id",
            Key::User => "user id",
        }
    }

    /// Issue 20's target for a flat-out rate keyed this way, as a share of the one-connection
    /// floor: by user id a user's orders share a lane, by order id lanes contend for accounts.
    pub fn floor_target(self) -> (f64, &'static str) {
        match self {
            Key::User => (1.5, "≥ 150%"),
            Key::Order => (1.0, "≥ 100%"),
        }
    }
}

/// Produces every original order of `plan` (its redeliveries and re-sends are the plan's
/// business: the benchmark's plans have none), awaits `after_producing` once the broker has
/// acknowledged them all (a backlog run starts its service there; `std::future::ready` for the
/// others), and waits, at most `timeout` after that, until each order has an outcome.
#[allow(clippy::too_many_arguments)]
pub async fn run<T>(
    brokers: &str,
    topics: &Topics<'_>,
    partitions: i32,
    plan: &Plan,
    key: Key,
    fetch_wait_ms: Option<u32>,
    timeout: Duration,
    after_producing: impl std::future::Future<Output = Fallible<T>>,
) -> Fallible<(PaymentRun, T)> {
    let workload = plan.workload().map_err(|e| format!("the plan: {e}"))?;
    let keys: Vec<String> = workload.orders.iter().map(orders_simulator::Order::key).collect();
    let user_ids: Vec<String> = plan
        .user_ids()
        .into_iter()
        .map(|id| match id {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        })
        .collect();
    let index: HashMap<String, usize> = keys.iter().cloned().enumerate().map(|(i, key)| (key, i)).collect();
    let reader =
        Reader::start(brokers, &[topics.order_paid, topics.order_payment_failed], partitions, fetch_wait_ms, index)?;

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        // Flat out, records share requests; at an offered rate, a shop sends each order when it
        // has it, and the latency measured starts at the send.
        .set("linger.ms", if plan.rate_per_sec.is_some() { "0" } else { "5" })
        .set("message.timeout.ms", "300000");
    let producer: FutureProducer = config.create().map_err(|e| format!("creating the producer: {e}"))?;
    // A new idempotent producer connects and obtains its producer id on its first record, which
    // takes a few hundred milliseconds on the mock broker: that is paid here, off the clock, on a
    // topic the service does not read.
    producer
        .send(FutureRecord::<(), str>::to(topics.warm_up).payload("warm-up"), Duration::from_secs(30))
        .await
        .map_err(|(error, _)| format!("warming up the producer: {error}"))?;
    let mut sent = vec![None; workload.orders.len()];
    let mut sent_wall = vec![None; workload.orders.len()];
    let mut deliveries = Vec::with_capacity(workload.messages.len());
    let started = Instant::now();
    let paced = tokio::time::Instant::now();
    for (n, message) in workload.messages.iter().enumerate() {
        if let Some(rate) = plan.rate_per_sec {
            // Against the start, so timer granularity does not lower the average rate.
            tokio::time::sleep_until(paced + Duration::from_secs_f64(n as f64 / f64::from(rate))).await;
        }
        let record_key = match key {
            Key::Order => &keys[message.order],
            Key::User => &user_ids[workload.orders[message.order].user],
        };
        let record = FutureRecord::to(topics.pay_order).key(record_key.as_str()).payload(message.payload.as_slice());
        let delivery = orders_simulator::enqueue(&producer, record)
            .await
            .map_err(|error| format!("producing {}: {error}", message.message_id))?;
        sent[message.order].get_or_insert_with(Instant::now);
        sent_wall[message.order].get_or_insert_with(SystemTime::now);
        deliveries.push(delivery);
    }
    let producing = started.elapsed();
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(format!("a pay.order delivery failed: {error}").into()),
            Err(_) => return Err("the producer dropped a delivery report".into()),
        }
    }
    let on_broker = Instant::now();
    let after = after_producing.await?;
    let deadline = Instant::now() + timeout;
    while reader.answered() < workload.orders.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = reader.finish()?;
    let answered = seen.first.iter().flatten().count();
    if answered < workload.orders.len() {
        return Err(format!(
            "{} of {} orders without an outcome {timeout:?} after the last produce",
            workload.orders.len() - answered,
            workload.orders.len()
        )
        .into());
    }
    let last = seen.first.iter().flatten().map(|outcome| outcome.at).max().unwrap_or(started);
    let first = seen.first.iter().flatten().map(|outcome| outcome.at).min().unwrap_or(last);
    let latency = sent
        .iter()
        .zip(&seen.first)
        .filter_map(|(sent, outcome)| Some(outcome.as_ref()?.at.saturating_duration_since((*sent)?)))
        .collect();
    let run = PaymentRun {
        orders: workload.orders.len(),
        paid: seen.first.iter().flatten().filter(|o| o.paid).count(),
        failed: seen.first.iter().flatten().filter(|o| !o.paid).count(),
        extra_events: seen.extra,
        elapsed: last.saturating_duration_since(started),
        producing,
        latency: Latency::of(latency),
        to_decided: Latency::of(
            sent_wall
                .iter()
                .zip(&seen.first)
                .filter_map(|(sent, outcome)| outcome.as_ref()?.decided?.duration_since((*sent)?).ok())
                .collect(),
        ),
        lag: Latency::of(seen.first.iter().flatten().filter_map(|o| o.lag).collect()),
        to_producer: Latency::of(seen.first.iter().flatten().filter_map(|o| o.to_producer).collect()),
        through_broker: Latency::of(seen.first.iter().flatten().filter_map(|o| o.through_broker).collect()),
        first_outcome: first.saturating_duration_since(on_broker),
        drain: last.saturating_duration_since(first),
    };
    Ok((run, after))
}

/// The topic names the run uses.
pub struct Topics<'a> {
    pub pay_order: &'a str,
    pub order_paid: &'a str,
    pub order_payment_failed: &'a str,
    /// A topic nobody reads, for the producer's first record.
    pub warm_up: &'a str,
}

/// The first outcome of one order.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    at: Instant,
    paid: bool,
    /// The `paid_at` of an `order.paid`.
    decided: Option<SystemTime>,
    /// `now − paid_at` for an `order.paid`.
    lag: Option<Duration>,
    /// `create time − paid_at` for an `order.paid`.
    to_producer: Option<Duration>,
    /// `now − create time`.
    through_broker: Option<Duration>,
}

struct Seen {
    first: Vec<Option<Outcome>>,
    extra: usize,
}

/// A thread reading the outcome topics from their current ends (assigned at the high watermarks
/// read before anything is produced, so nothing of the run is missed and nothing older is read).
struct Reader {
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Reader {
    fn start(
        brokers: &str,
        topics: &[&str],
        partitions: i32,
        fetch_wait_ms: Option<u32>,
        index: HashMap<String, usize>,
    ) -> Fallible<Reader> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("group.id", "payment-bench").set("enable.auto.commit", "false");
        if let Some(wait) = fetch_wait_ms {
            config.set("fetch.wait.max.ms", wait.to_string());
        }
        let consumer: BaseConsumer = config.create().map_err(|e| format!("creating the outcome reader: {e}"))?;
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            for partition in 0..partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
                    .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(|e| format!("assigning {topic}/{partition}: {e}"))?;
            }
        }
        consumer.assign(&assignment).map_err(|e| format!("assigning the outcome topics: {e}"))?;
        let paid_topic = topics[0].to_string();
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counting, stopping) = (answered.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("outcome-reader".into())
            .spawn(move || {
                let mut seen = Seen { first: vec![None; index.len()], extra: 0 };
                while !stopping.load(Ordering::Relaxed) {
                    let Some(Ok(record)) = consumer.poll(Duration::from_millis(50)) else { continue };
                    let (at, wall) = (Instant::now(), SystemTime::now());
                    let Some(order) = record.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| index.get(k))
                    else {
                        continue;
                    };
                    if seen.first[*order].is_some() {
                        seen.extra += 1;
                        continue;
                    }
                    let paid = record.topic() == paid_topic;
                    let decided = paid.then(|| paid_at(record.payload()?)).flatten();
                    let created = record
                        .timestamp()
                        .to_millis()
                        .and_then(|ms| u64::try_from(ms).ok())
                        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                    let lag = decided.map(|at| wall.duration_since(at).unwrap_or_default());
                    let to_producer = decided.zip(created).map(|(d, c)| c.duration_since(d).unwrap_or_default());
                    let through_broker = created.map(|c| wall.duration_since(c).unwrap_or_default());
                    seen.first[*order] = Some(Outcome { at, paid, decided, lag, to_producer, through_broker });
                    counting.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
            .map_err(|e| format!("starting the outcome reader: {e}"))?;
        Ok(Reader { answered, stop, thread: Some(thread) })
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> Fallible<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().ok_or("the outcome reader already finished")?;
        Ok(thread.join().map_err(|_| "the outcome reader panicked")?)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn paid_at(payload: &[u8]) -> Option<SystemTime> {
    let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(body["paid_at"].as_str()?).ok()?;
    Some(SystemTime::from(at.with_timezone(&chrono::Utc)))
}
