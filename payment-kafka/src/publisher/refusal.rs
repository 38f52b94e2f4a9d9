//! What a failed delivery says about its row: the broker may take it later (an outage: retried,
//! never parked), it will never take these bytes (parked), or the producer itself is broken
//! (rebuilt).
//!
//! Only a refusal of the *record* parks it. A topic that is missing, or a write that is not
//! authorised, is a property of the destination, and destinations come back: a topic recreated
//! after 15 s, an ACL reload, a credential rotation. Parking on those used to set aside every
//! event of the outage's window, out of their order, until an operator re-queued them (issue 18
//! (2)); now such a row stays in the outbox and is retried, with backoff, and a later row of the
//! same order is sent again after it, while the rows of other orders go on. The operator sees the
//! outage in `payment_outbox_publish_failures_total` and the age of the oldest waiting row.

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

/// What a failed delivery says about its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The broker may take the row later: it stays in the outbox and is retried.
    Transient,
    /// The broker will never take the row as it is: it is parked.
    Permanent,
    /// The producer itself is unusable: it is rebuilt and the row retried.
    FatalProducer,
}

/// Classifies the error of one delivery: the errors `send` returns when enqueueing (librdkafka's
/// local checks, e.g. its own `MSG_SIZE_TOO_LARGE` against `message.max.bytes`) and those of the
/// delivery report (the broker's answer) share one `MessageProduction` code.
pub(super) fn refusal(error: &RdKafkaError) -> Refusal {
    use RDKafkaErrorCode as Code;
    let RdKafkaError::MessageProduction(code) = error else {
        // e.g. `Canceled`: the producer went away under the delivery; nothing is known about the row.
        return Refusal::Transient;
    };
    match code {
        Code::Fatal => Refusal::FatalProducer,
        // The record: larger than the producer's or the broker's limit (same code for both),
        // corrupt, or refused by the broker's validation.
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::MessageBatchTooLarge
        | Code::InvalidMessage
        | Code::InvalidRecord => Refusal::Permanent,
        // Everything else is waited for: the destination (unknown or invalid topic, topic or
        // cluster authorisation), the broker (down, timeouts, replicas), and
        // `InvalidDifferentRecord` (another record of the batch was the invalid one).
        _ => Refusal::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce_error(code: RDKafkaErrorCode) -> Refusal {
        refusal(&RdKafkaError::MessageProduction(code))
    }

    #[test]
    fn a_row_the_broker_cannot_take_is_refused_for_good() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidMessageSize,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::InvalidRecord,
        ] {
            assert_eq!(produce_error(code), Refusal::Permanent, "{code:?}");
        }
    }

    #[test]
    fn a_destination_that_is_missing_or_forbidden_is_waited_for() {
        for code in [
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            assert_eq!(produce_error(code), Refusal::Transient, "{code:?}");
        }
    }

    #[test]
    fn a_broker_in_trouble_is_waited_for() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NetworkException,
            RDKafkaErrorCode::InvalidDifferentRecord,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
        ] {
            assert_eq!(produce_error(code), Refusal::Transient, "{code:?}");
        }
        assert_eq!(refusal(&RdKafkaError::Canceled), Refusal::Transient);
    }

    #[test]
    fn a_fatal_error_blames_the_producer() {
        assert_eq!(produce_error(RDKafkaErrorCode::Fatal), Refusal::FatalProducer);
    }
}
