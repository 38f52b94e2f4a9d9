//! `PayOrders`: a batch of `pay.order` and `refund.order` commands in one unit of work (a single
//! command is a batch of one).
//!
//! # A command the store refuses
//!
//! A unit of work fails either for a passing reason (a conflict, a connection lost, a timeout:
//! [`StoreError::is_transient`]), and is retried as is, or because the store refuses something
//! in it (a constraint the domain did not foresee, an encoding error, a corrupt row), and would
//! again: retried as is, one such command would hold back its batch and everything behind it for
//! ever, on every instance the partition moves to (issue 18 (3)).
//! [`Payments::pay_orders_isolating`] splits such a batch in halves, applied in order, and each
//! half that fails the same way again, until the refused command is alone; that command is
//! dead-lettered as `store_rejected` with the store's error, in a unit of work of its own, and
//! every other command is applied. A batch of `n` with one such command costs about
//! `2 log2(n)` more units of work, once.

use std::collections::HashMap;

use tracing::Instrument;

use super::{Error, Payments};
use crate::decide::{decide_payments, BatchKeys, BatchState, Outcome};
use crate::domain::{Command, DeadLetterReason, Inbound};
use crate::ports::{Store, StoreError, UnitOfWork};

/// Largest batch one unit of work accepts.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

impl<S: Store> Payments<S> {
    /// Applies a batch exactly once and returns each message's outcome, in order. On error nothing
    /// of the batch is written and it may be retried as is.
    pub async fn pay_orders(&self, batch: &[Inbound]) -> Result<Vec<Outcome>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(MAX_BATCH_MESSAGES) {
            let span = tracing::info_span!(
                "pay_orders",
                messages = chunk.len(),
                first = %chunk[0].identity,
                last = %chunk[chunk.len() - 1].identity,
            );
            let decided = self.retry.run("pay_orders", || self.pay_orders_once(chunk)).instrument(span).await?;
            outcomes.extend(decided);
        }
        Ok(outcomes)
    }

    /// [`pay_orders`](Self::pay_orders), except that a batch the store refuses twice for a reason
    /// that is not transient is split until the refused command is alone; that command is
    /// dead-lettered as [`DeadLetterReason::StoreRejected`] and the others are applied, in
    /// order (see the module docs). A transient error returns as it does from `pay_orders`,
    /// with the parts committed so far kept: the batch may be retried as is, and those parts
    /// are then redeliveries.
    pub async fn pay_orders_isolating(&self, batch: &[Inbound]) -> Result<Vec<Outcome>, Error> {
        let refused = match self.pay_orders(batch).await {
            Err(Error::Store(error)) if !error.is_transient() => error,
            other => return other,
        };
        // Once more as a whole first: an error that does not repeat is no reason to split.
        tracing::warn!(error = %refused, messages = batch.len(), "the store refused a batch; trying it once more");
        match self.pay_orders(batch).await {
            Err(Error::Store(error)) if !error.is_transient() => self.bisect(batch, error).await,
            other => other,
        }
    }

    /// Applies the halves of a batch the store refused with `error`, in order.
    async fn bisect(&self, batch: &[Inbound], error: StoreError) -> Result<Vec<Outcome>, Error> {
        if let [message] = batch {
            return self.set_aside(message, &error).await;
        }
        tracing::warn!(%error, messages = batch.len(), "the store refused a batch again; applying its halves apart");
        let (first, second) = batch.split_at(batch.len() / 2);
        let mut outcomes = Box::pin(self.isolate(first)).await?;
        outcomes.extend(Box::pin(self.isolate(second)).await?);
        Ok(outcomes)
    }

    /// One part of a split batch: applied, or split again when the store refuses it.
    async fn isolate(&self, part: &[Inbound]) -> Result<Vec<Outcome>, Error> {
        match self.pay_orders(part).await {
            Err(Error::Store(error)) if !error.is_transient() => self.bisect(part, error).await,
            other => other,
        }
    }

    /// Dead-letters a command the store refused on its own, with the store's error.
    async fn set_aside(&self, message: &Inbound, error: &StoreError) -> Result<Vec<Outcome>, Error> {
        tracing::error!(
            %error,
            identity = %message.identity,
            "the store refuses this command on its own; it is dead-lettered as store_rejected"
        );
        let rejected = Inbound {
            command: Command::Undecodable {
                reason: DeadLetterReason::StoreRejected,
                detail: format!("the store refused this command every time it was applied: {error}"),
            },
            ..message.clone()
        };
        self.pay_orders(std::slice::from_ref(&rejected)).await
    }

    async fn pay_orders_once(&self, batch: &[Inbound]) -> Result<Vec<Outcome>, Error> {
        let mut tx = self.store.begin().await?;
        let claimed = tx.claim_messages(&BatchKeys::of(batch).messages).await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            tracing::debug!("whole batch redelivered; nothing to do");
            return Ok(vec![Outcome::Redelivered; batch.len()]);
        }
        // Only the claimed messages need accounts and payments; locks follow in user-id order.
        let keys = BatchKeys::of(batch.iter().filter(|m| claimed.contains(&m.identity)));
        let accounts = tx.lock_accounts(&keys.users).await?;
        let payments = tx.load_payments(&keys.orders).await?;
        // A batch of payments only has no refund to load: it pays no extra statement.
        let refunds =
            if keys.refunds.is_empty() { Vec::new() } else { tx.load_refunds(&keys.orders, &keys.refunds).await? };
        let state = BatchState {
            claimed,
            accounts: accounts.into_iter().map(|a| (a.user_id.clone(), a)).collect(),
            payments: payments.into_iter().map(|p| (p.order_id.clone(), p)).collect(),
            refunds: refunds.into_iter().map(|r| (r.refund_id.clone(), r)).collect(),
        };
        let decision = decide_payments(state, batch, self.clock.now(), &mut uuid::Uuid::new_v4);
        tx.apply(&decision.effects)
            .instrument(tracing::info_span!("write", outbox_rows = decision.effects.outbox.len()))
            .await?;
        tx.commit().instrument(tracing::info_span!("commit")).await?;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for outcome in &decision.outcomes {
            *counts.entry(outcome.name()).or_default() += 1;
        }
        tracing::debug!(?counts, "batch committed");
        Ok(decision.outcomes)
    }
}
