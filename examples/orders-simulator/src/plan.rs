//! What a run does: the [`Plan`] (sizes, amounts, ratios, seed, time limits) and the
//! deterministic [`Workload`] it expands into (orders, and the messages that carry them).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::SimError;

/// Ids are `namespace * ID_SPAN + index + 1`, so the index must stay below it.
const ID_SPAN: u64 = 10_000_000;
/// Integer ids stay below 2^53 (10^8 × 10^7 = 10^15), so a JavaScript reader keeps them exact.
pub const MAX_INTEGER_NAMESPACE: u64 = 100_000_000;
/// How far (in messages) after its original a redelivery or re-send may be placed.
const EXTRA_WINDOW_MESSAGES: usize = 100;
/// The contract's largest amount, in cents (10^12 in units).
const MAX_AMOUNT_CENTS: u64 = 100_000_000_000_000;

/// The shape of a run. Defaults: 1,000 orders over 50 users holding 100.00 each, amounts 1.00 to
/// 30.00 (about 310.00 asked per user, so many orders fail for insufficient funds), flat out, 10%
/// redeliveries, 5% re-sends, string ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub orders: usize,
    pub users: usize,
    /// Deposited once into each account by [`prepare`](crate::prepare): > 0, ≤ 10^12, 2 decimals.
    pub deposit_per_user: Decimal,
    pub amount_min_cents: u64,
    pub amount_max_cents: u64,
    /// `pay.order` messages per second (originals, redeliveries and re-sends alike); `None`
    /// produces as fast as the client accepts them.
    pub rate_per_sec: Option<u32>,
    /// Share of orders whose message is produced a second time, same `message_id` (a
    /// redelivery: the service must ignore it).
    pub duplicate_ratio: f64,
    /// Share of orders sent again under a new `message_id` (a re-send: a paid order must get its
    /// original `order.paid` back and not be debited again).
    pub resend_ratio: f64,
    /// Share of the paid orders refunded on `refund.order` once the payments have their
    /// outcomes: some whole, some partially (a few re-sent), some in two parts and then once more
    /// (which must find nothing left). Zero sends no refund.
    pub refund_ratio: f64,
    /// Order and user ids as JSON integers instead of strings.
    pub integer_ids: bool,
    /// Drives every random choice: the same plan gives the same workload.
    pub seed: u64,
    /// Keeps ids apart between runs against a store or broker that outlives them: ids are
    /// `o-<namespace>-<n>` / `u-<namespace>-<n>`, or `namespace × 10^7 + n` as integers.
    /// Reusing a namespace on the same store makes the orders re-sends of the earlier run's.
    pub namespace: u64,
    /// Longest the HTTP API may stay unreachable or not ready for one request before giving up.
    pub ready_timeout: Duration,
    /// Longest to wait, once everything is produced, for every order to have an outcome.
    pub outcome_timeout: Duration,
    /// How long to keep listening after every order has an outcome, to catch late contradictions.
    pub settle: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            orders: 1_000,
            users: 50,
            deposit_per_user: Decimal::new(10_000, 2), // 100.00
            amount_min_cents: 100,
            amount_max_cents: 3_000,
            rate_per_sec: None,
            duplicate_ratio: 0.1,
            resend_ratio: 0.05,
            refund_ratio: 0.0,
            integer_ids: false,
            seed: 1,
            namespace: 0,
            ready_timeout: Duration::from_secs(60),
            outcome_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(2),
        }
    }
}

/// One order: its id exactly as the commands carry it, its user and amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// A JSON string or integer, per [`Plan::integer_ids`].
    pub order_id: Value,
    /// Index into [`Plan::user_ids`] and [`Accounts::accounts`](crate::Accounts).
    pub user: usize,
    pub amount: Decimal,
}

impl Order {
    /// The order id as text: the Kafka key, and how events of either JSON type are matched.
    pub fn key(&self) -> String {
        id_text(&self.order_id).unwrap_or_default()
    }

    /// The W3C trace id every command of this order is sent in (32 hex digits, never all zero):
    /// a function of the order id, so each outcome event of the order — a re-publication for a
    /// re-send included — must carry it in its `traceparent`.
    pub fn trace_id(&self) -> String {
        // FNV-1a of the key, spread by SplitMix64's finaliser into two unrelated halves: stable
        // across runs and processes, and orders with similar ids get dissimilar traces.
        let fnv = self
            .key()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        format!("{:016x}{:016x}", mix(fnv), mix(fnv.wrapping_add(0x9e37_79b9_7f4a_7c15)) | 1)
    }
}

/// Why a message is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Original,
    /// The original's exact bytes again.
    Duplicate,
    /// The same order under a new `message_id`.
    Resend,
}

/// One `pay.order` record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Index into [`Workload::orders`].
    pub order: usize,
    pub kind: MessageKind,
    pub message_id: String,
    pub payload: Vec<u8>,
}

/// A plan expanded: the orders and the messages in production order.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub orders: Vec<Order>,
    pub messages: Vec<Message>,
}

impl Workload {
    pub fn count(&self, kind: MessageKind) -> usize {
        self.messages.iter().filter(|message| message.kind == kind).count()
    }
}

impl Plan {
    pub fn validate(&self) -> Result<(), SimError> {
        let fail = |why: String| Err(SimError::InvalidPlan(why));
        if self.orders == 0 || self.orders as u64 >= ID_SPAN {
            return fail(format!("orders must be 1..{ID_SPAN}, got {}", self.orders));
        }
        if self.users == 0 || self.users as u64 >= ID_SPAN {
            return fail(format!("users must be 1..{ID_SPAN}, got {}", self.users));
        }
        let deposit = self.deposit_per_user;
        if deposit <= Decimal::ZERO || deposit > Decimal::from(1_000_000_000_000u64) || deposit.normalize().scale() > 2
        {
            return fail(format!("deposit_per_user must be > 0, ≤ 10^12, with at most 2 decimals, got {deposit}"));
        }
        if self.amount_min_cents == 0 || self.amount_min_cents > self.amount_max_cents {
            return fail(format!(
                "amounts must satisfy 1 ≤ min ≤ max cents, got {}..={}",
                self.amount_min_cents, self.amount_max_cents
            ));
        }
        if self.amount_max_cents > MAX_AMOUNT_CENTS {
            return fail(format!("amount_max_cents must be ≤ {MAX_AMOUNT_CENTS}"));
        }
        let ratios = [
            ("duplicate_ratio", self.duplicate_ratio),
            ("resend_ratio", self.resend_ratio),
            ("refund_ratio", self.refund_ratio),
        ];
        for (name, ratio) in ratios {
            if !(0.0..=1.0).contains(&ratio) {
                return fail(format!("{name} must be within 0..=1, got {ratio}"));
            }
        }
        if self.rate_per_sec == Some(0) {
            return fail("rate_per_sec must be positive (or None for flat out)".into());
        }
        if self.integer_ids && self.namespace >= MAX_INTEGER_NAMESPACE {
            return fail(format!("with integer ids the namespace must be < {MAX_INTEGER_NAMESPACE}"));
        }
        Ok(())
    }

    /// The users' ids as the commands carry them.
    pub fn user_ids(&self) -> Vec<Value> {
        (0..self.users).map(|index| self.id("u", index)).collect()
    }

    fn id(&self, prefix: &str, index: usize) -> Value {
        if self.integer_ids {
            json!(self.namespace * ID_SPAN + index as u64 + 1)
        } else {
            json!(format!("{prefix}-{}-{index}", self.namespace))
        }
    }

    /// Expands the plan. Exactly `round(orders × ratio)` distinct orders get a redelivery and
    /// (independently) a re-send, each placed at most 100 messages after its
    /// original, so it lands on the same partition later than the original.
    pub fn workload(&self) -> Result<Workload, SimError> {
        self.validate()?;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let user_ids = self.user_ids();
        let mut orders = Vec::with_capacity(self.orders);
        let mut amount_json = Vec::with_capacity(self.orders);
        for index in 0..self.orders {
            let user = rng.random_range(0..self.users);
            let cents = rng.random_range(self.amount_min_cents..=self.amount_max_cents);
            let amount = Decimal::new(cents as i64, 2);
            // Both encodings the contract allows; with arbitrary_precision the number keeps its text.
            let as_json = if rng.random_bool(0.5) {
                serde_json::from_str::<Value>(&amount.to_string()).unwrap_or_else(|_| json!(amount.to_string()))
            } else {
                json!(amount.to_string())
            };
            orders.push(Order { order_id: self.id("o", index), user, amount });
            amount_json.push(as_json);
        }
        let payload = |order: usize, message_id: &str| {
            let o = &orders[order];
            json!({
                "message_id": message_id,
                "order_id": o.order_id,
                "user_id": user_ids[o.user],
                "amount": amount_json[order],
            })
            .to_string()
            .into_bytes()
        };
        let message_id = |order: usize, attempt: u32| format!("m-{}-{order}-{attempt}", self.namespace);

        // (slot, tie-break, message): originals at their own index, extras later.
        let mut placed: Vec<(usize, usize, Message)> = Vec::new();
        for order in 0..self.orders {
            let id = message_id(order, 0);
            let message = Message { order, kind: MessageKind::Original, payload: payload(order, &id), message_id: id };
            placed.push((order, placed.len(), message));
        }
        let extras = [(MessageKind::Duplicate, self.duplicate_ratio), (MessageKind::Resend, self.resend_ratio)];
        for (kind, ratio) in extras {
            let count = ((self.orders as f64 * ratio).round() as usize).min(self.orders);
            let mut chosen = sample(&mut rng, self.orders, count).into_vec();
            chosen.sort_unstable();
            for order in chosen {
                let id = message_id(order, if kind == MessageKind::Resend { 1 } else { 0 });
                let slot = order + rng.random_range(1..=EXTRA_WINDOW_MESSAGES);
                let message = Message { order, kind, payload: payload(order, &id), message_id: id };
                placed.push((slot, placed.len(), message));
            }
        }
        placed.sort_by_key(|(slot, tie, _)| (*slot, *tie));
        let messages = placed.into_iter().map(|(_, _, message)| message).collect();
        Ok(Workload { orders, messages })
    }
}

/// An id as text, whichever JSON type carries it; `None` for anything else.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An exact decimal from a JSON number or string (money never passes through f64).
pub(crate) fn decimal_of(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        _ => return None,
    };
    text.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(&text).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn plan() -> Plan {
        Plan { orders: 2_000, users: 30, duplicate_ratio: 0.2, resend_ratio: 0.1, seed: 7, ..Plan::default() }
    }

    #[test]
    fn ratios_are_honoured_exactly() {
        let workload = plan().workload().unwrap();
        assert_eq!(workload.orders.len(), 2_000);
        assert_eq!(workload.count(MessageKind::Original), 2_000);
        assert_eq!(workload.count(MessageKind::Duplicate), 400);
        assert_eq!(workload.count(MessageKind::Resend), 200);
        assert_eq!(workload.messages.len(), 2_600);
        let none = Plan { duplicate_ratio: 0.0, resend_ratio: 0.0, ..plan() }.workload().unwrap();
        assert_eq!(none.messages.len(), 2_000);
        let all = Plan { duplicate_ratio: 1.0, resend_ratio: 1.0, ..plan() }.workload().unwrap();
        assert_eq!(all.messages.len(), 6_000);
    }

    #[test]
    fn extras_follow_their_original_and_keep_or_change_the_message_id() {
        let workload = plan().workload().unwrap();
        let mut original_at = HashMap::new();
        let mut ids = HashSet::new();
        for (position, message) in workload.messages.iter().enumerate() {
            let order = &workload.orders[message.order];
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            assert_eq!(body["order_id"], order.order_id);
            assert_eq!(decimal_of(&body["amount"]), Some(order.amount));
            assert_eq!(body["message_id"], json!(message.message_id));
            match message.kind {
                MessageKind::Original => {
                    original_at.insert(message.order, (position, message.message_id.clone()));
                }
                kind => {
                    let (at, original_id) = &original_at[&message.order];
                    assert!(*at < position, "{kind:?} of order {} before its original", message.order);
                    assert_eq!(kind == MessageKind::Duplicate, *original_id == message.message_id);
                }
            }
            if message.kind != MessageKind::Duplicate {
                assert!(ids.insert(message.message_id.clone()), "message id reused: {}", message.message_id);
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_workload_and_another_seed_another() {
        assert_eq!(plan().workload().unwrap(), plan().workload().unwrap());
        assert_ne!(plan().workload().unwrap(), Plan { seed: 8, ..plan() }.workload().unwrap());
    }

    #[test]
    fn amounts_stay_in_range_and_ids_take_the_asked_type() {
        let strings = plan().workload().unwrap();
        assert!(strings.orders.iter().all(|o| o.order_id.is_string()));
        let integers = Plan { integer_ids: true, namespace: 3, ..plan() }.workload().unwrap();
        assert!(integers.orders.iter().all(|o| o.order_id.is_u64()));
        assert_eq!(integers.orders[0].order_id, json!(30_000_001u64));
        let min = Decimal::new(100, 2);
        let max = Decimal::new(3_000, 2);
        assert!(strings.orders.iter().all(|o| o.amount >= min && o.amount <= max && o.amount.scale() == 2));
        assert!(strings.orders.iter().all(|o| o.user < 30));
    }

    #[test]
    fn invalid_plans_are_refused() {
        for bad in [
            Plan { orders: 0, ..plan() },
            Plan { users: 0, ..plan() },
            Plan { amount_min_cents: 0, ..plan() },
            Plan { amount_min_cents: 10, amount_max_cents: 9, ..plan() },
            Plan { duplicate_ratio: 1.5, ..plan() },
            Plan { resend_ratio: -0.1, ..plan() },
            Plan { refund_ratio: 1.1, ..plan() },
            Plan { deposit_per_user: Decimal::new(1, 3), ..plan() },
            Plan { rate_per_sec: Some(0), ..plan() },
            Plan { integer_ids: true, namespace: MAX_INTEGER_NAMESPACE, ..plan() },
        ] {
            assert!(matches!(bad.workload(), Err(SimError::InvalidPlan(_))), "{bad:?}");
        }
    }
}
