//! The refund half of the batch decision: `refund.order` commands, decided in the same pass as
//! payments ([`super::decide_payments`]) from the same loaded state, so a batch mixing both kinds
//! sees each command's effect on the next.
//!
//! Rules (SPEC §4, issue 22): a refund id is applied at most once, ever; a re-send asking for
//! the same refund re-publishes the original `order.refunded`, one asking for another is a
//! conflicting duplicate (dead-lettered, nothing contradicting emitted); the refunds of an order
//! never add up to more than its payment; a refund of an order not (yet) paid fails
//! `order_not_paid` and does not spend its refund id, so the shop retries it as is once the
//! order is paid. Like a failed payment, a failed refund is not remembered: the next command with
//! its refund id is a new attempt.

use super::pay_orders::{Decider, Outcome};
use crate::domain::{
    Amount, Balance, DeadLetterReason, Echoed, EntryCause, EntryKind, Inbound, LedgerEntry, OrderId, OrderRefundFailed,
    OrderRefunded, OutboxEvent, Refund, RefundFailureReason, RefundId, RefundOrder,
};

impl Decider<'_> {
    /// A refund command with a valid user and amount.
    pub(super) fn refund(&mut self, message: &Inbound, command: &RefundOrder) -> Outcome {
        if let Some(done) = self.state.refunds.get(&command.refund_id) {
            if done.is_asked_by(command) {
                let event = OrderRefunded::of(done, command.id_types);
                self.effects.outbox.push(OutboxEvent::refunded(&event, &message.identity).continuing(message));
                return Outcome::AlreadyRefunded { event_id: done.event_id };
            }
            let asked = command.amount.map_or_else(|| "what is left".to_string(), |amount| amount.to_string());
            let detail = format!(
                "refund {} gave {} back to user {} for order {}; this command asks {} back to user {} for order {}",
                done.refund_id, done.amount, done.user_id, done.order_id, asked, command.user_id, command.order_id
            );
            return self.dead_letter(message, DeadLetterReason::ConflictingDuplicate, detail);
        }
        let Some(payment) = self.state.payments.get(&command.order_id) else {
            return self.fail_refund_of(message, command, RefundFailureReason::OrderNotPaid);
        };
        if payment.user_id != command.user_id {
            return self.fail_refund_of(message, command, RefundFailureReason::UserMismatch);
        }
        let paid = payment.amount.value();
        let left = paid - self.refunded.get(&command.order_id).copied().unwrap_or_default();
        let amount = match command.amount {
            Some(amount) if amount.value() <= left => amount,
            Some(_) => return self.fail_refund_of(message, command, RefundFailureReason::ExceedsRefundable),
            // Nothing left is not a refund of zero: `Amount` is positive.
            None => match Amount::new(left) {
                Ok(amount) => amount,
                Err(_) => return self.fail_refund_of(message, command, RefundFailureReason::ExceedsRefundable),
            },
        };
        // The payer's account was loaded (and locked) with the batch's users; accounts are never
        // deleted, so a paid order always finds it. Were it gone, no one could be credited.
        let Some(account) = self.state.accounts.get_mut(&command.user_id) else {
            return self.fail_refund_of(message, command, RefundFailureReason::UserMismatch);
        };
        self.loaded.entry(account.user_id.clone()).or_insert(account.balance);
        let Ok(after) = account.balance.credit(amount) else {
            return self.fail_refund_of(message, command, RefundFailureReason::BalanceLimit);
        };
        account.balance = after;
        // 0 <= left - amount <= paid <= 10^12: always a valid balance-like sum.
        let refundable_left = Balance::new(left - amount.value()).unwrap_or(Balance::ZERO);
        let refund = Refund {
            refund_id: command.refund_id.clone(),
            order_id: command.order_id.clone(),
            user_id: command.user_id.clone(),
            amount,
            requested: command.amount,
            refundable_left,
            reason: command.reason.clone(),
            transaction_id: (self.new_id)(),
            event_id: (self.new_id)(),
            refunded_at: self.now,
        };
        self.effects.ledger.push(LedgerEntry {
            entry_id: refund.transaction_id,
            user_id: refund.user_id.clone(),
            kind: EntryKind::Refund,
            amount,
            balance_after: after,
            order_id: Some(refund.order_id.clone()),
            refund_id: Some(refund.refund_id.clone()),
            created_at: self.now,
            cause: Some(EntryCause::Refund(refund.refund_id.clone())),
        });
        let event = OrderRefunded::of(&refund, command.id_types);
        self.effects.outbox.push(OutboxEvent::refunded(&event, &message.identity).continuing(message));
        *self.refunded.entry(refund.order_id.clone()).or_default() += amount.value();
        let outcome = Outcome::Refunded { transaction_id: refund.transaction_id, event_id: refund.event_id };
        self.state.refunds.insert(refund.refund_id.clone(), refund.clone());
        self.effects.refunds.push(refund);
        outcome
    }

    fn fail_refund_of(&mut self, message: &Inbound, command: &RefundOrder, reason: RefundFailureReason) -> Outcome {
        let ids = command.id_types;
        let user_id = serde_json::json!(Echoed { id: &command.user_id, json_type: ids.user_id });
        self.fail_refund(
            message,
            Echoed { id: command.refund_id.clone(), json_type: ids.refund_id },
            Echoed { id: command.order_id.clone(), json_type: ids.order_id },
            user_id,
            command.amount.map(|amount| serde_json::json!(amount)),
            reason,
        )
    }

    pub(super) fn fail_refund(
        &mut self,
        message: &Inbound,
        refund_id: Echoed<RefundId>,
        order_id: Echoed<OrderId>,
        user_id: serde_json::Value,
        amount: Option<serde_json::Value>,
        reason: RefundFailureReason,
    ) -> Outcome {
        let event = OrderRefundFailed {
            event_id: (self.new_id)(),
            refund_id,
            order_id,
            user_id,
            amount,
            reason,
            failed_at: self.now,
        };
        self.effects.outbox.push(OutboxEvent::refund_failed(&event, &message.identity).continuing(message));
        Outcome::RefundFailed { reason, event_id: event.event_id }
    }
}
