//! Domain types. Each is validated once, when it is built, so the rest of the code can trust it.

mod account;
mod dead_letter;
mod events;
mod idempotency;
mod ids;
mod ledger;
pub(crate) mod money;
mod pay_order;
mod payment;
mod refund;
mod refund_events;
mod refund_order;
mod trace_context;

pub use account::Account;
pub use dead_letter::{DeadLetter, DeadLetterReason, Origin, MAX_DEAD_LETTER_PAYLOAD_BYTES};
pub use events::{EventKind, OrderPaid, OrderPaymentFailed, OutboxEvent};
pub use idempotency::IdempotencyRecord;
pub use ids::{Echoed, IdError, IdempotencyKey, JsonIdType, MessageId, OrderId, RefundId, RequestId, UserId};
pub use ledger::{
    EntryCause, EntryKind, LedgerEntry, LedgerPosition, StatementEntry, StatementPage, MAX_STATEMENT_PAGE,
};
pub use money::{Amount, Balance, MoneyError, MAX_AMOUNT, MAX_BALANCE};
pub use pay_order::{Command, IdTypes, Inbound, InboxClaim, PayOrder, MAX_PAY_ORDER_BYTES};
pub use payment::{FailureReason, Payment};
pub use refund::{Refund, RefundFailureReason};
pub use refund_events::{OrderRefundFailed, OrderRefunded};
pub use refund_order::{RefundIdTypes, RefundOrder, MAX_REFUND_REASON_CHARS};
pub use trace_context::{TraceContext, TraceContextError, MAX_TRACESTATE_BYTES, MAX_TRACESTATE_MEMBERS};
