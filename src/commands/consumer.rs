//! `payment-service consumer lag`: where the consumer group stands on each partition of
//! `pay.order` — its committed offset, the partition's end, and the difference — asked of the
//! broker, so it answers with the service stopped too (the `payment_consumer_lag_messages` gauge
//! exists only while an instance runs, and only for the partitions it owns).
//!
//! It reads the committed offsets with a client of the group's id that never joins the group
//! (no subscribe), so asking does not rebalance the running instances.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{kafka_client, CommandError, KAFKA_REQUEST_TIMEOUT};
use crate::Settings;

/// `payment-service consumer …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConsumerCommand {
    /// Per partition of `pay.order`: the group's committed offset, the end offset, and the lag
    /// (end − committed; with nothing committed, the messages retained). Needs KAFKA_BROKERS;
    /// the group is KAFKA_GROUP_ID.
    Lag,
}

/// One partition's position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    partition: i32,
    committed: Option<i64>,
    low: i64,
    end: i64,
}

impl Position {
    fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

pub async fn run(command: ConsumerCommand, settings: &Settings) -> Result<(), CommandError> {
    match command {
        ConsumerCommand::Lag => lag(settings).await,
    }
}

async fn lag(settings: &Settings) -> Result<(), CommandError> {
    let mut client = kafka_client(settings, "consumer lag")?;
    client.set("group.id", &settings.kafka_group_id).set("enable.auto.commit", "false");
    // The group reads both command topics.
    let topics = settings.topics();
    for topic in [topics.pay_order, topics.refund_order] {
        let client = client.clone();
        let asked = topic.clone();
        // librdkafka's calls block: keep them off the runtime's workers.
        let positions = tokio::task::spawn_blocking(move || positions(&client, &asked))
            .await
            .map_err(|error| CommandError::Refused(format!("the broker query did not finish: {error}")))??;
        let total: i64 = positions.iter().map(Position::lag).sum();
        println!(
            "group {} on {topic}: lag {total} message(s) over {} partition(s)",
            settings.kafka_group_id,
            positions.len()
        );
        println!("partition\tcommitted\tend\tlag");
        for position in &positions {
            let committed = position.committed.map_or_else(|| "-".to_string(), |offset| offset.to_string());
            println!("{}\t{committed}\t{}\t{}", position.partition, position.end, position.lag());
        }
    }
    Ok(())
}

fn positions(client: &rdkafka::ClientConfig, topic: &str) -> Result<Vec<Position>, CommandError> {
    // Through the service's error, which cuts a refused secret property's value out.
    let consumer: BaseConsumer = client.create().map_err(payment_kafka::KafkaError::Client)?;
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(CommandError::Refused(format!("the cluster has no topic {topic} (or it has no partitions)")));
    }
    let mut asked = TopicPartitionList::new();
    for partition in &partitions {
        asked.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(asked, KAFKA_REQUEST_TIMEOUT)?;
    let mut positions = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let committed = committed.find_partition(topic, partition).and_then(|p| match p.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(offset),
            _ => None,
        });
        let (low, end) = consumer.fetch_watermarks(topic, partition, KAFKA_REQUEST_TIMEOUT)?;
        positions.push(Position { partition, committed, low, end });
    }
    positions.sort_by_key(|p| p.partition);
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_distance_to_the_end_from_the_committed_offset_or_the_oldest_retained() {
        let at = |committed, low, end| Position { partition: 0, committed, low, end };
        assert_eq!(at(Some(7), 0, 10).lag(), 3);
        assert_eq!(at(Some(10), 0, 10).lag(), 0);
        assert_eq!(at(None, 4, 10).lag(), 6, "nothing committed: every retained message waits");
        assert_eq!(at(Some(2), 4, 10).lag(), 6, "a committed offset below the oldest retained one");
    }
}
