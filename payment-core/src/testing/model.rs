//! The reference model: the SPEC §2/§4 rules (payments and refunds) over plain maps, written
//! independently of [`crate::decide`], as the oracle of the property test.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::app::Error;
use crate::decide::Outcome;
use crate::domain::{
    Command, DeadLetterReason, EventKind, FailureReason, IdempotencyKey, Inbound, MessageId, OrderId,
    RefundFailureReason, RefundId, RefundOrder, UserId, MAX_BALANCE,
};

/// An outcome without its generated ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// [`Outcome::Paid`].
    Paid,
    /// [`Outcome::Failed`], with its reason.
    Failed(FailureReason),
    /// [`Outcome::AlreadyPaid`].
    AlreadyPaid,
    /// [`Outcome::DeadLettered`], with its reason.
    DeadLettered(DeadLetterReason),
    /// [`Outcome::Redelivered`].
    Redelivered,
    /// [`Outcome::Refunded`].
    Refunded,
    /// [`Outcome::RefundFailed`], with its reason.
    RefundFailed(RefundFailureReason),
    /// [`Outcome::AlreadyRefunded`].
    AlreadyRefunded,
}

impl From<Outcome> for Expected {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Paid { .. } => Expected::Paid,
            Outcome::Failed { reason, .. } => Expected::Failed(reason),
            Outcome::AlreadyPaid { .. } => Expected::AlreadyPaid,
            Outcome::DeadLettered { reason } => Expected::DeadLettered(reason),
            Outcome::Redelivered => Expected::Redelivered,
            Outcome::Refunded { .. } => Expected::Refunded,
            Outcome::RefundFailed { reason, .. } => Expected::RefundFailed(reason),
            Outcome::AlreadyRefunded { .. } => Expected::AlreadyRefunded,
        }
    }
}

/// A refund as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRefund {
    /// The order refunded.
    pub order: OrderId,
    /// The user credited.
    pub user: UserId,
    /// The amount the command asked; `None` for what was left.
    pub asked: Option<Decimal>,
    /// The amount credited.
    pub amount: Decimal,
}

/// What a store should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Each account's balance.
    pub balances: BTreeMap<UserId, Decimal>,
    /// Each account's total deposits: `balance == deposits − payments` is checked against it.
    pub deposits: BTreeMap<UserId, Decimal>,
    /// Paid orders: who paid and how much.
    pub paid: BTreeMap<OrderId, (UserId, Decimal)>,
    /// Applied refunds: what they are for and how much was asked and credited.
    pub refunds: BTreeMap<RefundId, ModelRefund>,
    /// Every message identity applied.
    pub inbox: BTreeSet<MessageId>,
    /// Idempotency keys: the amount asked and the balance answered.
    pub keys: BTreeMap<(UserId, IdempotencyKey), (Decimal, Decimal)>,
    /// The outbox: each event's kind and the message it answers.
    pub outbox: Vec<(EventKind, MessageId)>,
}

impl Model {
    /// Opens an account, as [`Payments::create_account`](crate::Payments::create_account) must.
    pub fn create(&mut self, user: &UserId) -> Result<(), Error> {
        if self.balances.contains_key(user) {
            return Err(Error::AccountExists);
        }
        self.balances.insert(user.clone(), Decimal::ZERO);
        Ok(())
    }

    /// The balance answered, and whether it was replayed.
    pub fn deposit(
        &mut self,
        user: &UserId,
        amount: Decimal,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Decimal, bool), Error> {
        let balance = *self.balances.get(user).ok_or(Error::AccountNotFound)?;
        if let Some(key) = key {
            if let Some((asked, answered)) = self.keys.get(&(user.clone(), key.clone())) {
                return if *asked == amount { Ok((*answered, true)) } else { Err(Error::IdempotencyKeyReused) };
            }
        }
        let after = balance + amount;
        if after > MAX_BALANCE {
            return Err(Error::BalanceLimit);
        }
        self.balances.insert(user.clone(), after);
        *self.deposits.entry(user.clone()).or_default() += amount;
        if let Some(key) = key {
            self.keys.insert((user.clone(), key.clone()), (amount, after));
        }
        Ok((after, false))
    }

    /// What user `user` got back from refunds, in total.
    pub fn refunded_to(&self, user: &UserId) -> Decimal {
        self.refunds.values().filter(|r| r.user == *user).map(|r| r.amount).sum()
    }

    /// What of order `order` is refunded, in total.
    pub fn refunded_of(&self, order: &OrderId) -> Decimal {
        self.refunds.values().filter(|r| r.order == *order).map(|r| r.amount).sum()
    }

    /// A valid refund: applied or re-published (`Ok`), failed (`Err(Some(reason))`) or a
    /// conflicting duplicate (`Err(None)`).
    fn refund_one(&mut self, command: &RefundOrder) -> Result<Expected, Option<RefundFailureReason>> {
        let asked = command.amount.map(|a| a.value());
        if let Some(done) = self.refunds.get(&command.refund_id) {
            let same = done.order == command.order_id && done.user == command.user_id && done.asked == asked;
            return if same { Ok(Expected::AlreadyRefunded) } else { Err(None) };
        }
        let (payer, paid) = self.paid.get(&command.order_id).ok_or(Some(RefundFailureReason::OrderNotPaid))?;
        if *payer != command.user_id {
            return Err(Some(RefundFailureReason::UserMismatch));
        }
        let left = *paid - self.refunded_of(&command.order_id);
        let amount = asked.unwrap_or(left);
        if amount > left || amount <= Decimal::ZERO {
            return Err(Some(RefundFailureReason::ExceedsRefundable));
        }
        let balance = *self.balances.get(&command.user_id).ok_or(Some(RefundFailureReason::UserMismatch))?;
        if balance + amount > MAX_BALANCE {
            return Err(Some(RefundFailureReason::BalanceLimit));
        }
        self.balances.insert(command.user_id.clone(), balance + amount);
        let refund = ModelRefund { order: command.order_id.clone(), user: command.user_id.clone(), asked, amount };
        self.refunds.insert(command.refund_id.clone(), refund);
        Ok(Expected::Refunded)
    }

    /// The outcome of each message of a batch, as
    /// [`Payments::pay_orders`](crate::Payments::pay_orders) must decide them.
    pub fn pay(&mut self, batch: &[Inbound]) -> Vec<Expected> {
        batch.iter().map(|message| self.pay_one(message)).collect()
    }

    fn pay_one(&mut self, message: &Inbound) -> Expected {
        if !self.inbox.insert(message.identity.clone()) {
            return Expected::Redelivered;
        }
        let (kind, expected) = match &message.command {
            Command::Undecodable { reason, .. } => (EventKind::DeadLetter, Expected::DeadLettered(*reason)),
            Command::Invalid { order_id, reason, .. } => match self.paid.contains_key(order_id) {
                true => (EventKind::DeadLetter, Expected::DeadLettered(DeadLetterReason::ConflictingDuplicate)),
                false => (EventKind::OrderPaymentFailed, Expected::Failed(*reason)),
            },
            Command::Pay(order) => {
                let amount = order.amount.value();
                match (self.paid.get(&order.order_id), self.balances.get(&order.user_id)) {
                    (Some((user, paid)), _) if *user == order.user_id && *paid == amount => {
                        (EventKind::OrderPaid, Expected::AlreadyPaid)
                    }
                    (Some(_), _) => {
                        (EventKind::DeadLetter, Expected::DeadLettered(DeadLetterReason::ConflictingDuplicate))
                    }
                    (None, None) => (EventKind::OrderPaymentFailed, Expected::Failed(FailureReason::AccountNotFound)),
                    (None, Some(balance)) if *balance < amount => {
                        (EventKind::OrderPaymentFailed, Expected::Failed(FailureReason::InsufficientFunds))
                    }
                    (None, Some(balance)) => {
                        self.balances.insert(order.user_id.clone(), balance - amount);
                        self.paid.insert(order.order_id.clone(), (order.user_id.clone(), amount));
                        (EventKind::OrderPaid, Expected::Paid)
                    }
                }
            }
            Command::InvalidRefund { refund_id, reason, .. } => match self.refunds.contains_key(&refund_id.id) {
                true => (EventKind::DeadLetter, Expected::DeadLettered(DeadLetterReason::ConflictingDuplicate)),
                false => (EventKind::OrderRefundFailed, Expected::RefundFailed(*reason)),
            },
            Command::Refund(refund) => match self.refund_one(refund) {
                Ok(expected) => (EventKind::OrderRefunded, expected),
                Err(Some(reason)) => (EventKind::OrderRefundFailed, Expected::RefundFailed(reason)),
                Err(None) => (EventKind::DeadLetter, Expected::DeadLettered(DeadLetterReason::ConflictingDuplicate)),
            },
        };
        self.outbox.push((kind, message.identity.clone()));
        expected
    }
}
