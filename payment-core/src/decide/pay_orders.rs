//! The decision for a batch of `pay.order` and `refund.order` commands (SPEC §4 semantics 1–5),
//! as a pure function.
//!
//! The store loads a [`BatchState`] for the batch's [`BatchKeys`]; [`decide_payments`] returns each
//! command's [`Outcome`] and the [`Effects`] to write. Commands are applied in order, so a later
//! command of the batch sees the payments, refunds and balances of the earlier ones. Refunds are
//! decided by the same pass (`refund_orders.rs`): a batch may mix both kinds, as a consumer of
//! both topics reads them.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{BalanceUpdate, Effects};
use crate::domain::{
    Account, Balance, Command, DeadLetter, DeadLetterReason, Echoed, EntryCause, EntryKind, FailureReason, Inbound,
    InboxClaim, LedgerEntry, MessageId, OrderId, OrderPaid, OrderPaymentFailed, OutboxEvent, PayOrder, Payment, Refund,
    RefundFailureReason, RefundId, UserId,
};

/// What a store must load for a batch: one call each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// Distinct message identities, in batch order, to claim in the inbox (with the trace
    /// context of the first message of each identity).
    pub messages: Vec<InboxClaim>,
    /// Distinct users with a valid command, sorted: accounts are locked in this order.
    pub users: Vec<UserId>,
    /// Distinct order ids, sorted, whose earlier payments (and refunds) are loaded.
    pub orders: Vec<OrderId>,
    /// Distinct refund ids, sorted, whose earlier refunds are loaded; empty for a batch without
    /// refund commands (which then needs no refund load at all).
    pub refunds: Vec<RefundId>,
}

impl BatchKeys {
    /// The keys to load for `batch`; pass only the claimed messages for `users` and `orders`.
    pub fn of<'a>(batch: impl IntoIterator<Item = &'a Inbound>) -> Self {
        let mut seen = HashSet::new();
        let mut messages = Vec::new();
        let mut users = Vec::new();
        let mut orders = Vec::new();
        let mut refunds = Vec::new();
        for message in batch {
            if seen.insert(&message.identity) {
                messages.push(InboxClaim { identity: message.identity.clone(), trace: message.trace.clone() });
            }
            match &message.command {
                Command::Pay(order) => {
                    users.push(order.user_id.clone());
                    orders.push(order.order_id.clone());
                }
                Command::Invalid { order_id, .. } => orders.push(order_id.clone()),
                Command::Refund(refund) => {
                    users.push(refund.user_id.clone());
                    orders.push(refund.order_id.clone());
                    refunds.push(refund.refund_id.clone());
                }
                Command::InvalidRefund { refund_id, order_id, .. } => {
                    orders.push(order_id.id.clone());
                    refunds.push(refund_id.id.clone());
                }
                Command::Undecodable { .. } => {}
            }
        }
        refunds.sort();
        refunds.dedup();
        users.sort();
        users.dedup();
        orders.sort();
        orders.dedup();
        Self { messages, users, orders, refunds }
    }
}

/// The state a batch is decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchState {
    /// Identities this transaction claimed in the inbox; any other message is a redelivery.
    pub claimed: HashSet<MessageId>,
    /// The existing accounts among the batch's users, locked until commit.
    pub accounts: HashMap<UserId, Account>,
    /// Earlier successful payments of the batch's order ids.
    pub payments: HashMap<OrderId, Payment>,
    /// Earlier successful refunds of the batch's order ids and refund ids.
    pub refunds: HashMap<RefundId, Refund>,
}

/// What happened to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Debited; `order.paid` emitted.
    Paid {
        /// Identifies the debit.
        transaction_id: Uuid,
        /// Identifies the `order.paid` event.
        event_id: Uuid,
    },
    /// Not debited; `order.payment_failed` emitted.
    Failed {
        /// Why nothing was debited.
        reason: FailureReason,
        /// Identifies the `order.payment_failed` event.
        event_id: Uuid,
    },
    /// The order was paid before by the same user for the same amount: the original `order.paid`
    /// is emitted again, nothing is debited.
    AlreadyPaid {
        /// The `event_id` of the original `order.paid`.
        event_id: Uuid,
    },
    /// Not applied; stored and published as a dead letter.
    DeadLettered {
        /// The dead letter's machine-readable reason.
        reason: DeadLetterReason,
    },
    /// The message was processed before (or earlier in this batch): no effect, nothing emitted.
    Redelivered,
    /// Credited back; `order.refunded` emitted.
    Refunded {
        /// Identifies the credit.
        transaction_id: Uuid,
        /// Identifies the `order.refunded` event.
        event_id: Uuid,
    },
    /// Not credited; `order.refund_failed` emitted.
    RefundFailed {
        /// Why nothing was credited.
        reason: RefundFailureReason,
        /// Identifies the `order.refund_failed` event.
        event_id: Uuid,
    },
    /// The refund id was applied before for the same order, user and amount asked: the original
    /// `order.refunded` is emitted again, nothing is credited.
    AlreadyRefunded {
        /// The `event_id` of the original `order.refunded`.
        event_id: Uuid,
    },
}

impl Outcome {
    /// A stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Paid { .. } => "paid",
            Outcome::Failed { .. } => "failed",
            Outcome::AlreadyPaid { .. } => "already_paid",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::Redelivered => "redelivered",
            Outcome::Refunded { .. } => "refunded",
            Outcome::RefundFailed { .. } => "refund_failed",
            Outcome::AlreadyRefunded { .. } => "already_refunded",
        }
    }
}

/// Every command's outcome, in batch order, and the writes that make them true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One per message of the batch, in batch order.
    pub outcomes: Vec<Outcome>,
    /// Everything to write in the unit of work.
    pub effects: Effects,
}

/// Decides a batch. `new_id` is the only source of randomness (event, transaction and entry ids).
pub fn decide_payments(
    state: BatchState,
    batch: &[Inbound],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Decision {
    let refunded = refunded_per_order(&state.refunds);
    let mut decider = Decider { state, refunded, loaded: BTreeMap::new(), effects: Effects::default(), now, new_id };
    let mut seen = HashSet::new();
    let outcomes = batch
        .iter()
        .map(|message| {
            if decider.state.claimed.contains(&message.identity) && seen.insert(&message.identity) {
                decider.decide(message)
            } else {
                Outcome::Redelivered
            }
        })
        .collect();
    Decision { outcomes, effects: decider.finish() }
}

pub(super) struct Decider<'a> {
    pub(super) state: BatchState,
    /// How much of each order's payment is refunded so far, loaded and decided.
    pub(super) refunded: HashMap<OrderId, Decimal>,
    /// Balance of each account as loaded, to emit one guarded update per account at the end.
    pub(super) loaded: BTreeMap<UserId, Balance>,
    pub(super) effects: Effects,
    pub(super) now: DateTime<Utc>,
    pub(super) new_id: &'a mut dyn FnMut() -> Uuid,
}

fn refunded_per_order(refunds: &HashMap<RefundId, Refund>) -> HashMap<OrderId, Decimal> {
    let mut sums: HashMap<OrderId, Decimal> = HashMap::new();
    for refund in refunds.values() {
        *sums.entry(refund.order_id.clone()).or_default() += refund.amount.value();
    }
    sums
}

impl Decider<'_> {
    fn decide(&mut self, message: &Inbound) -> Outcome {
        match &message.command {
            Command::Undecodable { reason, detail } => self.dead_letter(message, *reason, detail.clone()),
            Command::Invalid { order_id, .. } if self.state.payments.contains_key(order_id) => self.dead_letter(
                message,
                DeadLetterReason::ConflictingDuplicate,
                format!("order {order_id} is already paid; an invalid command for it is not applied"),
            ),
            Command::Invalid { order_id, order_id_type, user_id, amount, reason } => {
                let order_id = Echoed { id: order_id.clone(), json_type: *order_id_type };
                self.fail(message, order_id, user_id.clone(), amount.clone(), *reason)
            }
            Command::Pay(order) => match self.state.payments.get(&order.order_id) {
                Some(paid) if paid.user_id == order.user_id && paid.amount == order.amount => {
                    self.effects.outbox.push(
                        OutboxEvent::paid(&OrderPaid::of(paid, order.id_types), &message.identity).continuing(message),
                    );
                    Outcome::AlreadyPaid { event_id: paid.event_id }
                }
                Some(paid) => {
                    // Which field differs, never the paid values: the message travels in a Kafka
                    // header and must not tell its readers who paid the order, or how much.
                    let differs = match (paid.user_id == order.user_id, paid.amount == order.amount) {
                        (false, false) => "user and amount",
                        (false, true) => "user",
                        _ => "amount",
                    };
                    let detail = format!(
                        "order {} is already paid with another {differs}; this command is not applied",
                        paid.order_id
                    );
                    self.dead_letter(message, DeadLetterReason::ConflictingDuplicate, detail)
                }
                None => self.attempt(message, order),
            },
            Command::Refund(refund) => self.refund(message, refund),
            Command::InvalidRefund { refund_id, .. } if self.state.refunds.contains_key(&refund_id.id) => self
                .dead_letter(
                    message,
                    DeadLetterReason::ConflictingDuplicate,
                    format!("refund {} is already applied; an invalid command for it is not applied", refund_id.id),
                ),
            Command::InvalidRefund { refund_id, order_id, user_id, amount, reason } => {
                self.fail_refund(message, refund_id.clone(), order_id.clone(), user_id.clone(), amount.clone(), *reason)
            }
        }
    }

    /// A first attempt to pay an order, or a new one after earlier failures.
    fn attempt(&mut self, message: &Inbound, order: &PayOrder) -> Outcome {
        let Some(account) = self.state.accounts.get_mut(&order.user_id) else {
            return self.fail_order(message, order, FailureReason::AccountNotFound);
        };
        self.loaded.entry(account.user_id.clone()).or_insert(account.balance);
        let Some(after) = account.balance.debit(order.amount) else {
            return self.fail_order(message, order, FailureReason::InsufficientFunds);
        };
        account.balance = after;
        let payment = Payment {
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            amount: order.amount,
            transaction_id: (self.new_id)(),
            event_id: (self.new_id)(),
            paid_at: self.now,
        };
        self.effects.ledger.push(LedgerEntry {
            entry_id: payment.transaction_id,
            user_id: order.user_id.clone(),
            kind: EntryKind::Payment,
            amount: order.amount,
            balance_after: after,
            order_id: Some(order.order_id.clone()),
            refund_id: None,
            created_at: self.now,
            cause: Some(EntryCause::Message(message.identity.clone())),
        });
        self.effects
            .outbox
            .push(OutboxEvent::paid(&OrderPaid::of(&payment, order.id_types), &message.identity).continuing(message));
        let outcome = Outcome::Paid { transaction_id: payment.transaction_id, event_id: payment.event_id };
        self.state.payments.insert(payment.order_id.clone(), payment.clone());
        self.effects.payments.push(payment);
        outcome
    }

    fn fail_order(&mut self, message: &Inbound, order: &PayOrder, reason: FailureReason) -> Outcome {
        let user_id = serde_json::json!(Echoed { id: &order.user_id, json_type: order.id_types.user_id });
        let order_id = Echoed { id: order.order_id.clone(), json_type: order.id_types.order_id };
        self.fail(message, order_id, user_id, serde_json::json!(order.amount), reason)
    }

    fn fail(
        &mut self,
        message: &Inbound,
        order_id: Echoed<OrderId>,
        user_id: serde_json::Value,
        amount: serde_json::Value,
        reason: FailureReason,
    ) -> Outcome {
        let event = OrderPaymentFailed {
            event_id: (self.new_id)(),
            order_id,
            user_id,
            amount,
            status: "failed",
            reason,
            failed_at: self.now,
        };
        self.effects.outbox.push(OutboxEvent::failed(&event, &message.identity).continuing(message));
        Outcome::Failed { reason, event_id: event.event_id }
    }

    pub(super) fn dead_letter(&mut self, message: &Inbound, reason: DeadLetterReason, detail: String) -> Outcome {
        // Cut here, once: the stored dead letter and its outbox record carry the same bytes.
        let (payload, payload_original_bytes) = DeadLetter::capped_payload(&message.payload);
        let letter = DeadLetter {
            dead_letter_id: (self.new_id)(),
            message_id: message.identity.clone(),
            origin: message.origin.clone(),
            reason,
            detail,
            payload,
            payload_original_bytes,
            created_at: self.now,
        };
        self.effects.outbox.push(OutboxEvent::dead_letter(&letter).continuing(message));
        self.effects.dead_letters.push(letter);
        Outcome::DeadLettered { reason }
    }

    fn finish(mut self) -> Effects {
        let accounts = &self.state.accounts;
        self.effects.balance_updates = std::mem::take(&mut self.loaded)
            .into_iter()
            .filter_map(|(user_id, from)| {
                let to = accounts.get(&user_id)?.balance;
                (to != from).then_some(BalanceUpdate { user_id, from, to })
            })
            .collect();
        self.effects
    }
}
