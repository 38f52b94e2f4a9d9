//! `PayOrders`: a batch of `pay.order` and `refund.order` commands in one unit of work (a single
//! command is a batch of one).

use std::collections::HashMap;

use tracing::Instrument;

use super::{Error, Payments};
use crate::decide::{decide_payments, BatchKeys, BatchState, Outcome};
use crate::domain::Inbound;
use crate::ports::{Store, UnitOfWork};

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
        tx.apply(&decision.effects).await?;
        tx.commit().await?;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for outcome in &decision.outcomes {
            *counts.entry(outcome.name()).or_default() += 1;
        }
        tracing::debug!(?counts, "batch committed");
        Ok(decision.outcomes)
    }
}
