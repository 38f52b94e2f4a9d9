//! The statement of account: one [`LedgerEntry`] per balance change, with the balance after it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Amount, Balance, IdempotencyKey, MessageId, OrderId, RefundId, RequestId, UserId};

/// What moved money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Money in, from `POST /accounts/deposit`.
    Deposit,
    /// Money out, for an order.
    Payment,
    /// Money back in, for (part of) a paid order.
    Refund,
}

impl EntryKind {
    /// The stable name stored with the entry.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Deposit => "deposit",
            EntryKind::Payment => "payment",
            EntryKind::Refund => "refund",
        }
    }
}

/// Why an entry exists: what an auditor follows from a ledger row back to the request or command
/// that moved the money.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryCause {
    /// A payment: the inbox identity of its `pay.order` command (the `correlation-id` of its
    /// `order.paid` event).
    Message(MessageId),
    /// A refund: its refund id, applied at most once.
    Refund(RefundId),
    /// A deposit with an `Idempotency-Key`: its key (with the user, its idempotency record).
    IdempotencyKey(IdempotencyKey),
    /// A deposit without a key: the HTTP request's `X-Request-Id`, as logged with the request.
    Request(RequestId),
}

impl EntryCause {
    /// Longest [`stored`](Self::stored) form, in characters: the longest prefix and id.
    pub const MAX_STORED_CHARS: usize = 16 + MessageId::MAX_LEN;

    /// The stored form, `<kind>:<id>` (`message:…`, `refund:…`, `idempotency-key:…`,
    /// `request:…`); at most [`MAX_STORED_CHARS`](Self::MAX_STORED_CHARS) characters.
    pub fn stored(&self) -> String {
        match self {
            EntryCause::Message(id) => format!("message:{id}"),
            EntryCause::Refund(id) => format!("refund:{id}"),
            EntryCause::IdempotencyKey(key) => format!("idempotency-key:{key}"),
            EntryCause::Request(id) => format!("request:{id}"),
        }
    }

    /// Reads a [`stored`](Self::stored) form back; `None` for anything else.
    pub fn from_stored(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        match kind {
            "message" => MessageId::new(id).ok().map(EntryCause::Message),
            "refund" => RefundId::new(id).ok().map(EntryCause::Refund),
            "idempotency-key" => IdempotencyKey::new(id).ok().map(EntryCause::IdempotencyKey),
            "request" => RequestId::new(id).ok().map(EntryCause::Request),
            _ => None,
        }
    }
}

/// One change of one account's balance. `amount` is always positive; `kind` gives the direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Identifies the entry.
    pub entry_id: Uuid,
    /// The account whose balance changed.
    #[serde(skip)]
    pub user_id: UserId,
    /// Credit or debit.
    pub kind: EntryKind,
    /// How much moved; always positive.
    pub amount: Amount,
    /// The account's balance right after this entry.
    pub balance_after: Balance,
    /// The order paid or refunded; `None` for a deposit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// The refund, for a refund entry (linked to the order's payment by `order_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<RefundId>,
    /// When the entry was committed.
    pub created_at: DateTime<Utc>,
    /// Why it exists; `None` only for a deposit made without a key or a request id (through the
    /// library, not over HTTP) and for entries written before causes were recorded.
    #[serde(skip)]
    pub cause: Option<EntryCause>,
}

/// Where an entry sits in its account's statement: increases with every entry a store writes, so
/// statements are paged by keyset (`position < cursor`), never by offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LedgerPosition(pub i64);

/// A ledger entry as read back from a store, with its position for the next page's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementEntry {
    /// Its position in the account's statement, the cursor for the next page.
    pub position: LedgerPosition,
    /// The entry.
    pub entry: LedgerEntry,
}

/// Largest page of a statement.
pub const MAX_STATEMENT_PAGE: u16 = 500;

/// One page request: the newest `limit` entries strictly older than `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementPage {
    limit: u16,
    /// Only entries strictly older than this position; `None` for the newest.
    pub before: Option<LedgerPosition>,
}

impl StatementPage {
    /// The page size when the caller names none.
    pub const DEFAULT_LIMIT: u16 = 50;

    /// `limit` must be within `1..=500`.
    pub fn new(limit: u16, before: Option<LedgerPosition>) -> Option<Self> {
        (1..=MAX_STATEMENT_PAGE).contains(&limit).then_some(Self { limit, before })
    }

    /// Most entries on the page, within `1..=`[`MAX_STATEMENT_PAGE`].
    pub fn limit(self) -> u16 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_reads_back_from_its_stored_form_and_fits_the_column() {
        let longest = "m".repeat(MessageId::MAX_LEN);
        let causes = [
            EntryCause::Message(MessageId::new(longest).unwrap()),
            EntryCause::Refund(RefundId::new("r-1").unwrap()),
            EntryCause::IdempotencyKey(IdempotencyKey::new("k:with spaces").unwrap()),
            EntryCause::Request(RequestId::new("0b6c-a1").unwrap()),
        ];
        for cause in causes {
            let stored = cause.stored();
            assert!(stored.chars().count() <= EntryCause::MAX_STORED_CHARS, "{stored}");
            assert_eq!(EntryCause::from_stored(&stored), Some(cause));
        }
        for unknown in ["", "message", "nonsense:1", "request:has space"] {
            assert_eq!(EntryCause::from_stored(unknown), None, "{unknown:?}");
        }
    }
}
