//! The fetch thread: the only owner of the Kafka client. It polls a `BaseConsumer`, cuts the
//! stream into bounded batches for the async applier's lanes (`lanes.rs`: each partition pinned
//! to one lane, up to `max_batches_in_flight` lanes applied side by side), stores offsets once a
//! lane reports a batch committed, watches for a stalled client, and closes clients by a protocol
//! that cannot hang the caller.
//!
//! Batching is group commit, per lane: a lane's batch goes to its applier as soon as that applier
//! is free and every message already fetched is in it (after `batch_linger`, when that is set).
//! While a batch is being applied the lane's next one gathers, so batches grow with the load by
//! themselves: a lone command waits for no one, and a backlog is applied `batch_max_messages` at
//! a time.
//!
//! Flow control, per lane: at most one batch is being applied, one full batch waits in the lane's
//! hand-over channel and one is being gathered here — at most `3 × max_batches_in_flight ×
//! batch_max_messages` decoded messages in the process, besides librdkafka's own fetch queue.
//! When a lane has all three full the thread stops polling (the next message may be that lane's)
//! until its applier catches up, handing the other lanes what they gathered meanwhile; it polls
//! again within [`POLL_SLICE`] of that commit. A rebalance arriving in that window is served as
//! soon as polling resumes — within one batch's apply time (librdkafka only leaves the group when
//! `max.poll.interval.ms`, 5 min by default, passes without a poll, e.g. when the store has been
//! down that long; the partitions then move to a member that can apply them).

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use payment_core::domain::{Inbound, Origin};
use payment_core::Backoff;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::context::PayOrderContext;
use super::health::ConsumerHealth;
use super::lanes::Lanes;
use super::offsets::{Ack, Epoch, OffsetTracker, Offsets};
use super::unreadable::is_unreadable_record;
use crate::config::{ConsumerConfig, KafkaConfig};
use crate::KafkaError;

/// Longest single `poll`: how quickly the thread notices shutdown and commits when idle.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Longest `poll` while a gathered batch waits for the applier: how soon a commit is noticed.
const POLL_SLICE: Duration = Duration::from_millis(1);
/// How often, once the stall timeout has passed, the watchdog looks at the statistics again.
const STALL_RECHECK: Duration = Duration::from_secs(1);
/// Least time between two log lines of the same consumer error: librdkafka reports a failing
/// fetch at every attempt, twice a second or more.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

type Client = BaseConsumer<PayOrderContext>;

/// Messages handed to the applier, decoded, with the offsets to store once they commit.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<Inbound>,
    pub offsets: Offsets,
    /// When its first message was fetched; see `offsets`.
    pub epoch: Epoch,
    /// The lane that applies it (see `lanes.rs`).
    pub lane: usize,
    /// The `fetch` span: from the batch's first message to its hand-over to the applier.
    fetch: Option<tracing::Span>,
}

impl Batch {
    /// What the applier reports once the batch committed.
    pub fn ack(self) -> Ack {
        Ack { epoch: self.epoch, offsets: self.offsets, lane: self.lane }
    }

    fn push(&mut self, message: &BorrowedMessage<'_>, epoch: Epoch, refund_topic: &str) {
        if self.messages.is_empty() {
            self.epoch = epoch;
            // A root of its own: the commands' traces are linked from the batch's apply span.
            self.fetch = Some(
                tracing::info_span!(parent: None, "fetch", messages = tracing::field::Empty, partitions = tracing::field::Empty),
            );
        }
        let key = (message.topic().to_string(), message.partition());
        let last = self.offsets.entry(key).or_insert(message.offset());
        *last = (*last).max(message.offset());
        self.messages.push(decode(message, refund_topic));
    }
}

/// Consumer errors, logged once per [`ERROR_LOG_INTERVAL`] per error, with how many repeats
/// were left out.
#[derive(Default)]
struct ErrorLog {
    last: BTreeMap<String, (Instant, u64)>,
}

impl ErrorLog {
    fn log(&mut self, error: &KafkaErrorOfRdkafka, what: &'static str) {
        let now = Instant::now();
        let key = error.to_string();
        match self.last.get_mut(&key) {
            Some((at, repeats)) if now.duration_since(*at) < ERROR_LOG_INTERVAL => *repeats += 1,
            _ => {
                let repeats = self.last.insert(key, (now, 0)).map_or(0, |(_, repeats)| repeats);
                tracing::warn!(%error, repeats_not_logged = repeats, "{what}");
            }
        }
        // Bounded: errors come from a small set, but never let their texts pile up.
        if self.last.len() > 64 {
            self.last.retain(|_, (at, _)| now.duration_since(*at) < ERROR_LOG_INTERVAL);
        }
    }
}

type KafkaErrorOfRdkafka = rdkafka::error::KafkaError;

/// Why the fetch loop of one client ended.
enum Exit {
    /// Shutdown, or the applier is gone.
    Stop,
    /// Messages wait on the broker past this client's position and none arrive: replace it.
    Stalled,
}

pub struct Fetcher {
    pub kafka: KafkaConfig,
    pub config: ConsumerConfig,
    pub health: ConsumerHealth,
    pub stop: CancellationToken,
    /// One hand-over channel (of one) per lane.
    pub batches: Vec<Sender<Batch>>,
    pub acks: Receiver<Ack>,
}

impl Fetcher {
    /// Runs on its own OS thread until shutdown or until the applier goes away; always returns
    /// within about `close_timeout` of either.
    pub fn run(self) {
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        let mut clients = 0;
        loop {
            clients += 1;
            let client = match connect(&self.kafka, &self.config, &self.health) {
                Ok(client) => client,
                Err(error) => {
                    let wait = backoff.next_wait();
                    tracing::error!(%error, ?wait, "cannot create the Kafka consumer; retrying");
                    // Nobody would apply what this client fetched: stop retrying.
                    if self.stop.is_cancelled() || self.batches.iter().all(Sender::is_closed) {
                        return;
                    }
                    thread::sleep(wait);
                    continue;
                }
            };
            backoff.reset();
            let lanes = Lanes::new(self.batches.len());
            let mut acks = Acks { lanes, tracker: OffsetTracker::new(clients), client: clients };
            let exit = self.fetch(&client, &mut acks);
            // At shutdown every lane finishes (or abandons) the batch in hand and hangs up; only
            // then are the offsets final. A stalled client waits for every batch it handed over.
            let deadline = Instant::now() + self.config.close_timeout;
            self.settle(&client, &mut acks, deadline, matches!(exit, Exit::Stop));
            close_within(client, deadline, &self.health);
            if let Exit::Stop = exit {
                return;
            }
            self.health.client_replaced();
            tracing::warn!("replaced a stalled Kafka client; its partitions resume at the committed offsets");
        }
    }

    fn fetch(&self, client: &Client, acks: &mut Acks) -> Exit {
        let batch_max = self.config.batch_max_messages.max(1);
        // Whether the last poll found nothing more to add: every fetched message is gathered.
        let mut drained = false;
        // The last time this thread received a message or was not asking for one.
        let mut progress = Instant::now();
        let mut next_stall_check = progress + self.config.stall_timeout;
        let mut errors = ErrorLog::default();
        loop {
            if self.take_acks(client, acks).is_err() || self.stop.is_cancelled() {
                return Exit::Stop;
            }
            // While a full lane holds fetching up, the other lanes take what they have.
            let held_up = acks.lanes.any_full(batch_max);
            let now = Instant::now();
            for lane in 0..acks.lanes.count() {
                // A batch that is not full only goes to a free applier, so only a full one can
                // find its channel taken; it waits below for the commit that frees it.
                if !acks.lanes.ready(lane, batch_max, drained || held_up, now) {
                    continue;
                }
                let mut batch = acks.lanes.take(lane);
                let (messages, partitions) = (batch.messages.len(), batch.offsets.len());
                let fetch = batch.fetch.take();
                match self.batches[lane].try_send(batch) {
                    Ok(()) => {
                        if let Some(fetch) = fetch {
                            // As i64: OpenTelemetry has no unsigned integers (a u64 would be a string).
                            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                            fetch.record("messages", count(messages)).record("partitions", count(partitions));
                        }
                        acks.lanes.handed_over(lane);
                    }
                    Err(TrySendError::Closed(_)) => return Exit::Stop,
                    Err(TrySendError::Full(mut batch)) => {
                        batch.fetch = fetch;
                        acks.lanes.put_back(lane, batch);
                    }
                }
            }
            if acks.lanes.any_full(batch_max) {
                // Nothing more fits in that lane: wait for a commit instead of fetching.
                match self.acks.recv_timeout(POLL_SLICE) {
                    Ok(ack) => self.acknowledged(client, acks, &ack),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Exit::Stop,
                }
                progress = Instant::now();
                next_stall_check = progress + self.config.stall_timeout;
                continue;
            }
            let timeout = acks.lanes.poll_timeout(Instant::now(), POLL_SLICE, IDLE_POLL);
            match client.poll(timeout) {
                Some(Ok(message)) => {
                    self.health.message_received();
                    let rebalances = self.health.rebalances();
                    let epoch = Epoch { client: acks.client, rebalances };
                    let lane = acks.lanes.lane_of(message.topic(), message.partition(), rebalances);
                    acks.lanes.gather(lane, self.config.batch_linger).push(
                        &message,
                        epoch,
                        &self.kafka.topics.refund_order,
                    );
                    drained = false;
                    progress = Instant::now();
                    next_stall_check = progress + self.config.stall_timeout;
                }
                Some(Err(error)) => {
                    drained = true;
                    match error {
                        // A record the client cannot read: librdkafka fetches it again and again.
                        // The statistics say which partition it stops (`unreadable.rs`), which is
                        // logged once; this line only says it is happening, once a minute at most.
                        rdkafka::error::KafkaError::MessageConsumption(code) if is_unreadable_record(code) => {
                            client.context().unreadable_record(code.to_string());
                            errors.log(
                                &error,
                                "a record cannot be read; the next statistics say which partition it stops",
                            );
                        }
                        // Broker or network trouble: librdkafka reconnects by itself; nothing was read.
                        _ => errors.log(&error, "Kafka consumer error; librdkafka retries by itself"),
                    }
                }
                None => drained = true,
            }
            if Instant::now() >= next_stall_check {
                next_stall_check = Instant::now() + STALL_RECHECK;
                let waiting = client.assignment().map(|a| client.context().waiting_messages(&a)).unwrap_or(0);
                if waiting > 0 && acks.lanes.nothing_gathered() {
                    self.health.stalled();
                    tracing::warn!(
                        waiting,
                        since = ?progress.elapsed(),
                        "messages wait on the broker past this consumer's position but none arrive"
                    );
                    return Exit::Stalled;
                }
            }
        }
    }

    /// Stores the offsets of every batch the applier reported committed since the last call.
    /// `Err` once the applier is gone.
    fn take_acks(&self, client: &Client, acks: &mut Acks) -> Result<(), ()> {
        loop {
            match self.acks.try_recv() {
                Ok(ack) => self.acknowledged(client, acks, &ack),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(()),
            }
        }
    }

    /// Counts and stores an acknowledgement as `offsets` allows (forward only, this client's, this
    /// assignment's).
    fn acknowledged(&self, client: &Client, acks: &mut Acks, ack: &Ack) {
        let verdict = acks.tracker.accept(ack, self.health.rebalances());
        if !verdict.counted {
            tracing::info!("a replaced client's batch committed; its partitions resume at the committed offsets");
            return;
        }
        acks.lanes.acknowledged(ack.lane);
        if verdict.store.is_empty() && !ack.offsets.is_empty() {
            tracing::info!(
                "partitions were reassigned while a batch was applied; its offsets are not stored and its \
                 messages are read again as redeliveries"
            );
        }
        for ((topic, partition), offset) in verdict.store {
            // Fails when the partition was revoked meanwhile: its new owner re-reads the batch,
            // which the inbox then ignores.
            if let Err(error) = client.store_offset(&topic, partition, offset) {
                tracing::info!(%error, topic, partition, offset, "offset not stored; the partition moved");
            }
        }
    }

    /// Waits, without fetching, until every batch handed over, in every lane, is acknowledged (or,
    /// at shutdown, until every lane hangs up), storing their offsets, or until `deadline`.
    fn settle(&self, client: &Client, acks: &mut Acks, deadline: Instant, until_hang_up: bool) {
        while until_hang_up || acks.lanes.in_flight() > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                tracing::warn!(
                    in_flight = acks.lanes.in_flight(),
                    "batches still uncommitted at close; they will be delivered again"
                );
                return;
            };
            match self.acks.recv_timeout(left) {
                Ok(ack) => self.acknowledged(client, acks, &ack),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One client's lanes (batches gathered and in flight) and stored offsets.
struct Acks {
    lanes: Lanes,
    tracker: OffsetTracker,
    /// Which client this is, for the batches it fetches.
    client: u64,
}

/// Closes a client on a thread of its own and waits for it until `deadline`: commit what was
/// stored, unsubscribe, serve the revocation, then destroy. Destroying a client while a
/// rebalance is pending can block in librdkafka for ever (librdkafka#4884); unsubscribing and
/// serving the revocation first avoids that, and the deadline bounds whatever remains — a close
/// that overruns is logged, counted and left behind rather than waited for.
fn close_within(client: Client, deadline: Instant, health: &ConsumerHealth) {
    let (done, closed) = std::sync::mpsc::channel::<()>();
    let spawned = thread::Builder::new().name("pay-order-close".into()).spawn(move || {
        if let Err(error) = client.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "no offsets committed at close");
        }
        client.unsubscribe();
        while Instant::now() < deadline {
            match client.assignment() {
                Ok(assigned) if assigned.count() == 0 => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot read the assignment while closing");
                    break;
                }
            }
            // Serves the revocation; messages still buffered are dropped unstored, so they are
            // delivered again to the partitions' next owner.
            let _ = client.poll(IDLE_POLL);
        }
        drop(client);
        let _ = done.send(());
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start a thread to close the Kafka consumer; leaving it open");
        health.close_overran();
        return;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if closed.recv_timeout(left).is_err() {
        health.close_overran();
        tracing::error!("the Kafka consumer did not close in time; leaving it behind (librdkafka close hang)");
    }
}

fn connect(kafka: &KafkaConfig, config: &ConsumerConfig, health: &ConsumerHealth) -> Result<Client, KafkaError> {
    let consumer: Client = super::client_config(kafka, config)?
        .create_with_context(PayOrderContext::new(health.clone()))
        .map_err(KafkaError::Client)?;
    let topics = kafka.topics.commands();
    consumer.subscribe(&topics).map_err(|source| KafkaError::Subscribe { topic: topics.join(","), source })?;
    Ok(consumer)
}

/// A record of the refund topic is a refund command; any other is a payment command. One batch
/// may hold both: they are decided together, in the order received.
fn decode(message: &BorrowedMessage<'_>, refund_topic: &str) -> Inbound {
    let header = message.headers().and_then(|headers| {
        headers.iter().find(|h| h.key == "message-id").and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
    });
    let origin =
        Origin { topic: message.topic().to_string(), partition: message.partition(), offset: message.offset() };
    let payload = message.payload().unwrap_or_default();
    // CreateTime or LogAppendTime alike: either differs between two records that share a
    // position in two incarnations of the topic.
    let created_at_ms = message.timestamp().to_millis();
    let inbound = if message.topic() == refund_topic {
        Inbound::decode_refund(payload, header, origin, created_at_ms)
    } else {
        Inbound::decode_record(payload, header, origin, created_at_ms)
    };
    inbound.with_trace(crate::trace_context::of_record(message))
}
