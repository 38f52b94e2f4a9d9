//! The decision for a batch of `pay.order` commands (SPEC §4 semantics 1–5), as a pure function.
//!
//! The store loads a [`BatchState`] for the batch's [`BatchKeys`]; [`decide_payments`] returns each
//! command's [`Outcome`] and the [`Effects`] to write. Commands are applied in order, so a later
//! command of the batch sees the payments and balances of the earlier ones.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{BalanceUpdate, Effects};
use crate::domain::{
    Account, Balance, Command, DeadLetter, DeadLetterReason, Echoed, EntryKind, FailureReason, Inbound, LedgerEntry,
    MessageId, OrderId, OrderPaid, OrderPaymentFailed, OutboxEvent, PayOrder, Payment, UserId,
};

/// What a store must load for a batch: one call each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// Distinct message identities, in batch order, to claim in the inbox.
    pub messages: Vec<MessageId>,
    /// Distinct users with a valid command, sorted: accounts are locked in this order.
    pub users: Vec<UserId>,
    /// Distinct order ids, sorted, whose earlier payments are loaded.
    pub orders: Vec<OrderId>,
}

impl BatchKeys {
    /// The keys to load for `batch`; pass only the claimed messages for `users` and `orders`.
    pub fn of<'a>(batch: impl IntoIterator<Item = &'a Inbound>) -> Self {
        let mut seen = HashSet::new();
        let mut messages = Vec::new();
        let mut users = Vec::new();
        let mut orders = Vec::new();
        for message in batch {
            if seen.insert(&message.identity) {
                messages.push(message.identity.clone());
            }
            match &message.command {
                Command::Pay(order) => {
                    users.push(order.user_id.clone());
                    orders.push(order.order_id.clone());
                }
                Command::Invalid { order_id, .. } => orders.push(order_id.clone()),
                Command::Undecodable { .. } => {}
            }
        }
        users.sort();
        users.dedup();
        orders.sort();
        orders.dedup();
        Self { messages, users, orders }
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
    let mut decider = Decider { state, loaded: BTreeMap::new(), effects: Effects::default(), now, new_id };
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

struct Decider<'a> {
    state: BatchState,
    /// Balance of each account as loaded, to emit one guarded update per account at the end.
    loaded: BTreeMap<UserId, Balance>,
    effects: Effects,
    now: DateTime<Utc>,
    new_id: &'a mut dyn FnMut() -> Uuid,
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
                    self.effects
                        .outbox
                        .push(OutboxEvent::paid(&OrderPaid::of(paid, order.id_types), &message.identity));
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
            created_at: self.now,
        });
        self.effects.outbox.push(OutboxEvent::paid(&OrderPaid::of(&payment, order.id_types), &message.identity));
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
        self.effects.outbox.push(OutboxEvent::failed(&event, &message.identity));
        Outcome::Failed { reason, event_id: event.event_id }
    }

    fn dead_letter(&mut self, message: &Inbound, reason: DeadLetterReason, detail: String) -> Outcome {
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
        self.effects.outbox.push(OutboxEvent::dead_letter(&letter));
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
