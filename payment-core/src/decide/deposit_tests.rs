//! The deposit decision on its own: no store, no I/O.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::{Account, Amount, Balance, IdempotencyKey, IdempotencyRecord, UserId, MAX_BALANCE};

fn counter() -> impl FnMut() -> Uuid {
    let mut n = 0u128;
    move || {
        n += 1;
        Uuid::from_u128(n)
    }
}

fn cents(n: i64) -> Amount {
    Amount::new(Decimal::new(n, 2)).unwrap()
}

fn request(user: &str, amount: i64, key: Option<&str>) -> DepositRequest {
    DepositRequest {
        user_id: UserId::new(user).unwrap(),
        amount: cents(amount),
        key: key.map(|k| IdempotencyKey::new(k).unwrap()),
        request_id: None,
    }
}

fn account(user: &str, balance: Decimal) -> Account {
    let mut account = Account::open(UserId::new(user).unwrap(), Utc.timestamp_opt(0, 0).unwrap());
    account.balance = Balance::new(balance).unwrap();
    account
}

fn record(user: &str, key: &str, amount: i64, balance: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        user_id: UserId::new(user).unwrap(),
        key: IdempotencyKey::new(key).unwrap(),
        amount: cents(amount),
        balance: Balance::new(Decimal::new(balance, 2)).unwrap(),
        created_at: Utc.timestamp_opt(0, 0).unwrap(),
    }
}

fn decide(state: DepositState, requests: &[DepositRequest]) -> DepositsDecision {
    decide_deposits(state, requests, Utc.timestamp_opt(1_700_000_000, 0).unwrap(), &mut counter())
}

fn credited(n: i64) -> Result<Deposited, DepositRefusal> {
    Ok(Deposited::Credited { balance: Balance::new(Decimal::new(n, 2)).unwrap() })
}

fn replayed(n: i64) -> Result<Deposited, DepositRefusal> {
    Ok(Deposited::Replayed { balance: Balance::new(Decimal::new(n, 2)).unwrap() })
}

#[test]
fn later_deposits_see_earlier_credits_and_one_update_per_account() {
    let state = DepositState::of(vec![account("u1", Decimal::new(100, 2)), account("u2", Decimal::ZERO)], vec![]);
    let requests = [request("u1", 200, None), request("u2", 5, None), request("u1", 300, None)];
    let decision = decide(state, &requests);
    assert_eq!(decision.outcomes, [credited(300), credited(5), credited(600)]);
    let updates: Vec<_> =
        decision.effects.balance_updates.iter().map(|u| (u.user_id.as_str(), u.from.value(), u.to.value())).collect();
    assert_eq!(
        updates,
        [("u1", Decimal::new(100, 2), Decimal::new(600, 2)), ("u2", Decimal::ZERO, Decimal::new(5, 2))]
    );
    let after: Vec<_> = decision.effects.ledger.iter().map(|e| e.balance_after.value()).collect();
    assert_eq!(after, [Decimal::new(300, 2), Decimal::new(5, 2), Decimal::new(600, 2)]);
}

#[test]
fn a_stored_key_replays_its_amount_and_refuses_another() {
    let state = DepositState::of(vec![account("u1", Decimal::new(900, 2))], vec![record("u1", "k", 250, 750)]);
    let decision = decide(state, &[request("u1", 250, Some("k")), request("u1", 251, Some("k"))]);
    assert_eq!(decision.outcomes, [replayed(750), Err(DepositRefusal::IdempotencyKeyReused)]);
    assert!(decision.effects.is_empty());
}

#[test]
fn the_same_key_twice_in_a_batch_credits_once() {
    let state = DepositState::of(vec![account("u1", Decimal::ZERO), account("u2", Decimal::ZERO)], vec![]);
    let requests = [
        request("u1", 700, Some("k")),
        request("u1", 700, Some("k")),
        request("u1", 100, Some("k")),
        request("u2", 700, Some("k")),
    ];
    let decision = decide(state, &requests);
    assert_eq!(
        decision.outcomes,
        [credited(700), replayed(700), Err(DepositRefusal::IdempotencyKeyReused), credited(700)],
        "a later request under a key used earlier in the batch is a retry of it; another user's key is another key"
    );
    assert_eq!(decision.effects.ledger.len(), 2);
    assert_eq!(decision.effects.idempotency.len(), 2);
}

#[test]
fn a_refused_deposit_leaves_its_neighbours_alone() {
    let near_max = MAX_BALANCE - Decimal::new(100, 2);
    let state = DepositState::of(vec![account("u1", Decimal::ZERO), account("full", near_max)], vec![]);
    let requests = [
        request("u1", 100, None),
        request("ghost", 100, None),
        request("full", 101, Some("k")),
        request("u1", 100, None),
        request("full", 100, Some("k")),
    ];
    let decision = decide(state, &requests);
    assert_eq!(decision.outcomes[..2], [credited(100), Err(DepositRefusal::AccountNotFound)]);
    assert_eq!(decision.outcomes[2..4], [Err(DepositRefusal::BalanceLimit), credited(200)]);
    assert_eq!(decision.outcomes[4], Ok(Deposited::Credited { balance: Balance::new(MAX_BALANCE).unwrap() }));
    assert_eq!(decision.effects.ledger.len(), 3, "refusals write nothing, not even the refused key");
}

#[test]
fn decide_deposit_is_a_batch_of_one() {
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let acct = account("u1", Decimal::new(100, 2));
    let key = IdempotencyKey::new("k").unwrap();
    let id = Uuid::from_u128(7);
    let Ok(DepositDecision::Apply { effects, balance }) =
        decide_deposit(Some(&acct), cents(50), Some(KeyState { key: &key, earlier: None }), now, id)
    else {
        panic!("a first deposit applies")
    };
    assert_eq!(balance.value(), Decimal::new(150, 2));
    assert_eq!((effects.ledger[0].entry_id, effects.idempotency.len()), (id, 1));
    let earlier = record("u1", "k", 50, 150);
    let again = decide_deposit(Some(&acct), cents(50), Some(KeyState { key: &key, earlier: Some(&earlier) }), now, id);
    assert_eq!(again, Ok(DepositDecision::Replay { balance: earlier.balance }));
    assert_eq!(decide_deposit(None, cents(50), None, now, id), Err(DepositRefusal::AccountNotFound));
}

/// Requests `(user, cents, key)`: user 3 has no account; account balances in cents, the last one
/// near the limit; stored records `(user, key, cents)`.
type Generated = (Vec<(u8, i64, Option<u8>)>, Vec<i64>, Vec<(u8, u8, i64)>);

fn arbitrary_deposits() -> impl Strategy<Value = Generated> {
    (
        prop::collection::vec((0u8..4, 1i64..600, prop::option::weighted(0.5, 0u8..3)), 0..24),
        prop::collection::vec(0i64..1500, 3),
        prop::collection::vec((0u8..3, 0u8..3, 1i64..600), 0..3),
    )
}

fn state_of(balances: &[i64], stored: &[(u8, u8, i64)]) -> DepositState {
    let mut accounts: Vec<Account> =
        balances.iter().enumerate().map(|(i, c)| account(&format!("u{i}"), Decimal::new(*c, 2))).collect();
    // The last account sits just under the limit, so some credits overflow it.
    if let Some(last) = accounts.last_mut() {
        last.balance = Balance::new(MAX_BALANCE - last.balance.value()).unwrap();
    }
    let records = stored.iter().map(|(u, k, c)| record(&format!("u{u}"), &format!("k{k}"), *c, *c)).collect();
    DepositState::of(accounts, records)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Money is conserved, a `(user, key)` credits at most once, a refusal changes nothing, and
    /// every answer matches the request it answers — for any state and any batch.
    #[test]
    fn deposit_decisions_conserve_money_and_credit_each_key_once(
        (generated, balances, stored) in arbitrary_deposits()
    ) {
        let requests: Vec<DepositRequest> = generated
            .iter()
            .map(|(u, c, k)| request(&format!("u{u}"), *c, k.map(|k| format!("k{k}")).as_deref()))
            .collect();
        let loaded = state_of(&balances, &stored);
        let decision = decide(loaded.clone(), &requests);
        let effects = &decision.effects;
        prop_assert_eq!(decision.outcomes.len(), requests.len());

        let credited: Decimal = requests
            .iter()
            .zip(&decision.outcomes)
            .filter(|(_, o)| matches!(o, Ok(Deposited::Credited { .. })))
            .map(|(r, _)| r.amount.value())
            .sum();
        let ledger: Decimal = effects.ledger.iter().map(|e| e.amount.value()).sum();
        let moved: Decimal = effects.balance_updates.iter().map(|u| u.to.value() - u.from.value()).sum();
        prop_assert_eq!(credited, ledger);
        prop_assert_eq!(credited, moved);
        for update in &effects.balance_updates {
            prop_assert_eq!(loaded.accounts[&update.user_id].balance, update.from);
            prop_assert!(update.to.value() <= MAX_BALANCE);
        }

        let mut keys = HashSet::new();
        for record in &effects.idempotency {
            let key = (record.user_id.clone(), record.key.clone());
            prop_assert!(!loaded.keys.contains_key(&key), "a stored key is never written again");
            prop_assert!(keys.insert(key), "one record per (user, key)");
        }
        let keyed_credits = requests
            .iter()
            .zip(&decision.outcomes)
            .filter(|(r, o)| r.key.is_some() && matches!(o, Ok(Deposited::Credited { .. })))
            .count();
        prop_assert_eq!(keyed_credits, effects.idempotency.len());

        // Replays answer what the key's first deposit answered, for the same amount.
        for (request, outcome) in requests.iter().zip(&decision.outcomes) {
            if let Ok(Deposited::Replayed { balance }) = outcome {
                let key = (request.user_id.clone(), request.key.clone().unwrap());
                let first = loaded.keys.get(&key).or_else(|| effects.idempotency.iter().find(|r| (&r.user_id, &r.key) == (&key.0, &key.1)));
                prop_assert_eq!(first.map(|r| (r.amount, r.balance)), Some((request.amount, *balance)));
            }
        }

        // Without the refused requests, the decision is the same: a refusal changes nothing.
        let accepted: Vec<DepositRequest> = requests
            .iter()
            .zip(&decision.outcomes)
            .filter(|(_, o)| o.is_ok())
            .map(|(r, _)| r.clone())
            .collect();
        let without = decide(loaded, &accepted);
        prop_assert_eq!(&without.effects, effects);
        let kept: Vec<_> = decision.outcomes.iter().filter(|o| o.is_ok()).cloned().collect();
        prop_assert_eq!(without.outcomes, kept);
    }
}
