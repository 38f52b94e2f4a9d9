//! The reference model: the SPEC §2/§4 rules over plain maps, written independently of
//! [`crate::decide`], as the oracle of the property test.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::app::Error;
use crate::decide::Outcome;
use crate::domain::{
    Command, DeadLetterReason, EventKind, FailureReason, IdempotencyKey, Inbound, MessageId, OrderId, UserId,
    MAX_BALANCE,
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
}

impl From<Outcome> for Expected {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Paid { .. } => Expected::Paid,
            Outcome::Failed { reason, .. } => Expected::Failed(reason),
            Outcome::AlreadyPaid { .. } => Expected::AlreadyPaid,
            Outcome::DeadLettered { reason } => Expected::DeadLettered(reason),
            Outcome::Redelivered => Expected::Redelivered,
        }
    }
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
        };
        self.outbox.push((kind, message.identity.clone()));
        expected
    }
}
