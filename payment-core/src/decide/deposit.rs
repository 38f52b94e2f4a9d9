//! The decision for a batch of deposits, with their optional idempotency keys, as a pure function.
//!
//! The store loads a [`DepositState`] for the batch's [`DepositKeys`]; [`decide_deposits`] answers
//! each request and returns the [`Effects`] to write. Requests are decided in order, so a later one
//! sees the credits and the idempotency records of the earlier ones.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{BalanceUpdate, Effects};
use crate::domain::{
    Account, Amount, Balance, EntryCause, EntryKind, IdempotencyKey, IdempotencyRecord, LedgerEntry, RequestId, UserId,
};

/// Why a deposit is refused. A refusal changes nothing, and refuses that deposit only.
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

/// One deposit asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRequest {
    /// The account to credit.
    pub user_id: UserId,
    /// How much.
    pub amount: Amount,
    /// The request's idempotency key, if it carries one.
    pub key: Option<IdempotencyKey>,
    /// The request that asked for it (`X-Request-Id`), if known: the ledger entry's cause when
    /// there is no key.
    pub request_id: Option<RequestId>,
}

/// What a store must load for a batch of deposits: one call each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepositKeys {
    /// Distinct users, sorted: accounts are locked in this order.
    pub users: Vec<UserId>,
    /// Distinct `(user, key)` pairs, sorted, whose earlier records are loaded.
    pub keys: Vec<(UserId, IdempotencyKey)>,
}

impl DepositKeys {
    /// The keys to load for `requests`.
    pub fn of<'a>(requests: impl IntoIterator<Item = &'a DepositRequest>) -> Self {
        let mut users = Vec::new();
        let mut keys = Vec::new();
        for request in requests {
            users.push(request.user_id.clone());
            if let Some(key) = &request.key {
                keys.push((request.user_id.clone(), key.clone()));
            }
        }
        users.sort();
        users.dedup();
        keys.sort();
        keys.dedup();
        Self { users, keys }
    }
}

/// The state a batch of deposits is decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepositState {
    /// The existing accounts among the batch's users, locked until commit.
    pub accounts: HashMap<UserId, Account>,
    /// Earlier deposits under the batch's `(user, key)` pairs.
    pub keys: HashMap<(UserId, IdempotencyKey), IdempotencyRecord>,
}

impl DepositState {
    /// The state of the loaded `accounts` and idempotency `records`.
    pub fn of(accounts: Vec<Account>, records: Vec<IdempotencyRecord>) -> Self {
        Self {
            accounts: accounts.into_iter().map(|a| (a.user_id.clone(), a)).collect(),
            keys: records.into_iter().map(|r| ((r.user_id.clone(), r.key.clone()), r)).collect(),
        }
    }
}

/// The answer to one accepted deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deposited {
    /// Credited by this batch.
    Credited {
        /// The balance right after this credit.
        balance: Balance,
    },
    /// A retry of a deposit with the same key and amount, stored or earlier in the batch: nothing
    /// credited.
    Replayed {
        /// The balance answered the first time.
        balance: Balance,
    },
}

/// Every request's answer, in batch order, and the writes that make them true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositsDecision {
    /// One per request, in batch order.
    pub outcomes: Vec<Result<Deposited, DepositRefusal>>,
    /// Everything to write in the unit of work; empty when nothing is credited.
    pub effects: Effects,
}

/// Decides a batch of deposits. `new_id` is the only source of randomness (ledger entry ids).
pub fn decide_deposits(
    mut state: DepositState,
    requests: &[DepositRequest],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> DepositsDecision {
    // Balance of each credited account as loaded, for one guarded update per account.
    let mut loaded = BTreeMap::new();
    let mut effects = Effects::default();
    let outcomes = requests
        .iter()
        .map(|request| {
            let account = state.accounts.get_mut(&request.user_id).ok_or(DepositRefusal::AccountNotFound)?;
            let key = request.key.as_ref().map(|key| (request.user_id.clone(), key.clone()));
            if let Some(earlier) = key.as_ref().and_then(|key| state.keys.get(key)) {
                return if earlier.amount == request.amount {
                    Ok(Deposited::Replayed { balance: earlier.balance })
                } else {
                    Err(DepositRefusal::IdempotencyKeyReused)
                };
            }
            let balance = account.balance.credit(request.amount).map_err(|_| DepositRefusal::BalanceLimit)?;
            loaded.entry(account.user_id.clone()).or_insert(account.balance);
            account.balance = balance;
            effects.ledger.push(LedgerEntry {
                entry_id: new_id(),
                user_id: request.user_id.clone(),
                kind: EntryKind::Deposit,
                amount: request.amount,
                balance_after: balance,
                order_id: None,
                refund_id: None,
                created_at: now,
                cause: match (&request.key, &request.request_id) {
                    (Some(key), _) => Some(EntryCause::IdempotencyKey(key.clone())),
                    (None, Some(request)) => Some(EntryCause::Request(request.clone())),
                    (None, None) => None,
                },
            });
            if let Some(key) = key {
                let record = IdempotencyRecord {
                    user_id: key.0.clone(),
                    key: key.1.clone(),
                    amount: request.amount,
                    balance,
                    created_at: now,
                };
                // A later request of the batch under the same key is a retry of this one.
                state.keys.insert(key, record.clone());
                effects.idempotency.push(record);
            }
            Ok(Deposited::Credited { balance })
        })
        .collect();
    effects.balance_updates = loaded
        .into_iter()
        .filter_map(|(user_id, from)| {
            let to = state.accounts.get(&user_id)?.balance;
            (to != from).then_some(BalanceUpdate { user_id, from, to })
        })
        .collect();
    DepositsDecision { outcomes, effects }
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

/// Decides one deposit on the locked `account`: [`decide_deposits`] for a batch of one.
pub fn decide_deposit(
    account: Option<&Account>,
    amount: Amount,
    key: Option<KeyState<'_>>,
    now: DateTime<Utc>,
    entry_id: Uuid,
) -> Result<DepositDecision, DepositRefusal> {
    let Some(account) = account else { return Err(DepositRefusal::AccountNotFound) };
    let request = DepositRequest {
        user_id: account.user_id.clone(),
        amount,
        key: key.map(|state| state.key.clone()),
        request_id: None,
    };
    let state =
        DepositState::of(vec![account.clone()], key.and_then(|state| state.earlier.cloned()).into_iter().collect());
    let decision = decide_deposits(state, std::slice::from_ref(&request), now, &mut || entry_id);
    match decision.outcomes.into_iter().next() {
        Some(Ok(Deposited::Credited { balance })) => Ok(DepositDecision::Apply { effects: decision.effects, balance }),
        Some(Ok(Deposited::Replayed { balance })) => Ok(DepositDecision::Replay { balance }),
        Some(Err(refusal)) => Err(refusal),
        None => unreachable!("one request has one outcome"),
    }
}
