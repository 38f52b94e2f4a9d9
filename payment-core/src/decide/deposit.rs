//! The decision for one deposit, with its optional idempotency key, as a pure function.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{BalanceUpdate, Effects};
use crate::domain::{Account, Amount, Balance, EntryKind, IdempotencyKey, IdempotencyRecord, LedgerEntry};

/// Why a deposit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DepositRefusal {
    /// The user has no account.
    #[error("the user has no account")]
    AccountNotFound,
    /// Crediting would take the balance over [`MAX_BALANCE`](crate::domain::MAX_BALANCE).
    #[error("the deposit would take the balance over its limit")]
    BalanceLimit,
    /// The key's earlier deposit was for another amount.
    #[error("the idempotency key was used for a different deposit")]
    IdempotencyKeyReused,
}

/// A deposit to write, or the answer already given to an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositDecision {
    /// A new deposit: write its effects and commit.
    Apply {
        /// The balance update, the ledger entry and, with a key, the idempotency record.
        effects: Effects,
        /// The balance once the effects are committed.
        balance: Balance,
    },
    /// A retry of an earlier deposit with the same key and amount: write nothing.
    Replay {
        /// The balance answered the first time.
        balance: Balance,
    },
}

/// The idempotency key of a request and what the store holds for it, if anything.
#[derive(Debug, Clone, Copy)]
pub struct KeyState<'a> {
    /// The key the request carries.
    pub key: &'a IdempotencyKey,
    /// The deposit the store holds for this user and key, if any.
    pub earlier: Option<&'a IdempotencyRecord>,
}

/// Decides a deposit on the locked `account`.
pub fn decide_deposit(
    account: Option<&Account>,
    amount: Amount,
    key: Option<KeyState<'_>>,
    now: DateTime<Utc>,
    entry_id: Uuid,
) -> Result<DepositDecision, DepositRefusal> {
    let account = account.ok_or(DepositRefusal::AccountNotFound)?;
    if let Some(KeyState { earlier: Some(earlier), .. }) = key {
        return if earlier.amount == amount {
            Ok(DepositDecision::Replay { balance: earlier.balance })
        } else {
            Err(DepositRefusal::IdempotencyKeyReused)
        };
    }
    let balance = account.balance.credit(amount).map_err(|_| DepositRefusal::BalanceLimit)?;
    let effects = Effects {
        balance_updates: vec![BalanceUpdate { user_id: account.user_id.clone(), from: account.balance, to: balance }],
        ledger: vec![LedgerEntry {
            entry_id,
            user_id: account.user_id.clone(),
            kind: EntryKind::Deposit,
            amount,
            balance_after: balance,
            order_id: None,
            created_at: now,
        }],
        idempotency: key
            .map(|KeyState { key, .. }| IdempotencyRecord {
                user_id: account.user_id.clone(),
                key: key.clone(),
                amount,
                balance,
                created_at: now,
            })
            .into_iter()
            .collect(),
        ..Effects::default()
    };
    Ok(DepositDecision::Apply { effects, balance })
}
