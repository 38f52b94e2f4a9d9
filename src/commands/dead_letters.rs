//! `payment-service dead-letters list|resend`: the dead letters the consumer stored with their
//! reason, and the re-sending of one to `pay.order` once its cause is fixed.
//!
//! A re-sent command needs an identity the inbox has not claimed, or the consumer drops it as a
//! redelivery and nothing happens: the dead letter's own identity is claimed with it. So the
//! original bytes go out with a `message-id` header of `dead-letter-resend/<dead_letter_id>`,
//! which the consumer uses when the payload carries no valid `message_id` field (the field
//! wins). That identity is new for the first re-send and the same for every later one, so one
//! dead letter is applied at most once however often it is re-sent; and the money is safe
//! whatever the identity, since an order is debited at most once (the unique payment per order).
//! When the payload carries a `message_id` that the inbox has claimed, the re-send would be a
//! no-op, and the command refuses and says so instead of pretending.

use std::time::Duration;

use payment_core::domain::{DeadLetter, Inbound, MessageId, Origin};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use super::{kafka_client, store, CommandError, KAFKA_REQUEST_TIMEOUT};
use crate::Settings;

/// How many dead letters `list` shows when not told.
const LIST_DEFAULT: u32 = 50;
/// Longest detail shown per line of `list`, in characters; the rest is cut with `…`.
const LIST_DETAIL_CHARS_MAX: usize = 120;
/// The prefix of a re-sent command's identity.
pub const RESEND_IDENTITY_PREFIX: &str = "dead-letter-resend/";

/// `payment-service dead-letters …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// The newest dead letters first: id, time, reason, where the message was read
    /// (topic/partition/offset), its identity and the reason in words. Needs DATABASE_URL.
    List {
        /// Most dead letters shown (1..=1000).
        #[arg(long, default_value_t = LIST_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=i64::from(payment_postgres::DEAD_LETTERS_LIST_MAX)))]
        limit: u32,
    },
    /// Re-sends a dead letter's original bytes to `pay.order`, once its cause is fixed, with the
    /// identity `dead-letter-resend/<ID>` (re-sending it again has no further effect). Refused
    /// when the payload was cut at 64 KiB, or when it carries a `message_id` the inbox already
    /// holds (the consumer would drop it as a redelivery). Needs DATABASE_URL and KAFKA_BROKERS.
    Resend {
        /// The dead letter's id (the `dead-letter-id` header; the first column of `list`).
        #[arg(long)]
        id: Uuid,
    },
}

pub async fn run(command: DeadLettersCommand, settings: &Settings) -> Result<(), CommandError> {
    match command {
        DeadLettersCommand::List { limit } => list(settings, limit).await,
        DeadLettersCommand::Resend { id } => resend(settings, id).await,
    }
}

async fn list(settings: &Settings, limit: u32) -> Result<(), CommandError> {
    let store = store(settings, "dead-letters list").await?;
    let dead_letters = store.dead_letters(limit).await?;
    println!("{} dead letter(s), newest first", dead_letters.len());
    println!("dead_letter_id\tcreated_at\treason\tsource\tmessage_id\tdetail");
    for dead_letter in &dead_letters {
        println!("{}", line(dead_letter));
    }
    Ok(())
}

/// One dead letter on one tab-separated line.
fn line(dead_letter: &DeadLetter) -> String {
    let source = match &dead_letter.origin {
        Some(origin) => format!("{}/{}/{}", origin.topic, origin.partition, origin.offset),
        None => "-".into(),
    };
    let mut detail: String = dead_letter.detail.chars().filter(|c| !c.is_control()).collect();
    if detail.chars().count() > LIST_DETAIL_CHARS_MAX {
        detail = detail.chars().take(LIST_DETAIL_CHARS_MAX).collect::<String>() + "…";
    }
    let cut = match dead_letter.payload_original_bytes {
        Some(bytes) => format!(" (payload cut: {bytes} bytes originally)"),
        None => String::new(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{}\t{detail}{cut}",
        dead_letter.dead_letter_id,
        dead_letter.created_at.to_rfc3339(),
        dead_letter.reason.as_str(),
        source,
        dead_letter.message_id,
    )
}

async fn resend(settings: &Settings, id: Uuid) -> Result<(), CommandError> {
    const COMMAND: &str = "dead-letters resend";
    let store = store(settings, COMMAND).await?;
    let client = kafka_client(settings, COMMAND)?;
    let dead_letter =
        store.dead_letter(id).await?.ok_or_else(|| CommandError::Refused(format!("no dead letter has the id {id}")))?;
    if let Some(bytes) = dead_letter.payload_original_bytes {
        return Err(CommandError::Refused(format!(
            "dead letter {id} kept only the first {} of its {bytes} bytes: re-sending them would not be the original command; have its producer send it again",
            dead_letter.payload.len()
        )));
    }
    let topic = settings.topics().pay_order;
    let header_identity = MessageId::new(format!("{RESEND_IDENTITY_PREFIX}{id}"))
        .map_err(|error| CommandError::Refused(format!("cannot build the re-sent identity: {error}")))?;
    // The identity the consumer will give the re-sent record, by the consumer's own rules.
    let origin = Origin { topic: topic.clone(), partition: 0, offset: 0 };
    let identity = Inbound::decode(&dead_letter.payload, Some(header_identity.as_str()), origin).identity;
    if store.inbox_contains(&identity).await? {
        let why = if identity == header_identity {
            "it was re-sent before".to_string()
        } else {
            "its payload's message_id field names it, and the inbox claimed it with the dead letter".to_string()
        };
        return Err(CommandError::Refused(format!(
            "dead letter {id} not re-sent: the consumer would drop it as a redelivery of {identity} ({why}); a producer must send the order again with a new message_id"
        )));
    }
    let producer: FutureProducer = client
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", KAFKA_REQUEST_TIMEOUT.as_millis().to_string())
        .create()
        // Through the service's error, which cuts a refused secret property's value out.
        .map_err(payment_kafka::KafkaError::Client)?;
    let headers = OwnedHeaders::new()
        .insert(Header { key: "message-id", value: Some(header_identity.as_str()) })
        .insert(Header { key: "resent-dead-letter-id", value: Some(id.to_string().as_str()) });
    let record = FutureRecord::<(), [u8]>::to(&topic).payload(&dead_letter.payload).headers(headers);
    let delivered = producer.send(record, Duration::ZERO).await;
    let delivery = delivered.map_err(|(error, _)| CommandError::Kafka(error))?;
    tracing::info!(%id, %identity, partition = delivery.partition, offset = delivery.offset, "dead letter re-sent");
    println!(
        "re-sent dead letter {id} to {topic} (partition {}, offset {}) as identity {identity}",
        delivery.partition, delivery.offset
    );
    Ok(())
}
