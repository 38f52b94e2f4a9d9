//! Money: [`Amount`] (what moves) and [`Balance`] (what an account holds).
//!
//! Both wrap an exact [`Decimal`] with at most two fractional digits. Input is parsed from text with
//! our own grammar so that nothing is ever rounded and no `f64` is involved: `10.001` is refused,
//! not turned into `10.00`.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount one operation may move: one trillion.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
/// Largest balance an account may hold: 10^15.
pub const MAX_BALANCE: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);
/// Fractional digits allowed after normalisation.
pub const MAX_SCALE: u32 = 2;

/// Why a piece of text or a decimal is not valid money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not JSON number syntax.
    #[error("not a decimal number")]
    NotANumber,
    /// More than two fractional digits once normalised; money is never rounded.
    #[error("more than {MAX_SCALE} fractional digits")]
    TooPrecise,
    /// An amount of zero or less.
    #[error("must be greater than zero")]
    NotPositive,
    /// An amount above [`MAX_AMOUNT`].
    #[error("exceeds the limit of {MAX_AMOUNT}")]
    TooLarge,
    /// A balance below zero.
    #[error("a balance cannot be negative")]
    Negative,
    /// A balance above [`MAX_BALANCE`].
    #[error("exceeds the balance limit of {MAX_BALANCE}")]
    BalanceLimit,
}

/// A positive sum of money, `0 < amount <= 10^12`, with at most two fractional digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Validates a decimal; it is normalised (`10.50` becomes `10.5`), never rounded.
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        let value = value.normalize();
        if value.scale() > MAX_SCALE {
            return Err(MoneyError::TooPrecise);
        }
        if value <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if value > MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        Ok(Self(value))
    }

    /// The exact, normalised value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// Reads an amount from a JSON number (its exact text, never an `f64`) or a JSON string, so
    /// every edge that accepts money in JSON shares one grammar and one set of limits.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, MoneyError> {
        Self::new(decimal_from_json(value)?)
    }
}

impl FromStr for Amount {
    type Err = MoneyError;

    /// Parses JSON number syntax (`100`, `100.5`, `1.005e2`) exactly.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(parse_exact(text)?)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an account holds: `0 <= balance <= 10^15`, at most two fractional digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Balance(Decimal);

impl Balance {
    /// The balance of a new account.
    pub const ZERO: Balance = Balance(Decimal::ZERO);

    /// Validates a decimal; it is normalised, never rounded.
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        let value = value.normalize();
        if value.scale() > MAX_SCALE {
            return Err(MoneyError::TooPrecise);
        }
        if value < Decimal::ZERO {
            return Err(MoneyError::Negative);
        }
        if value > MAX_BALANCE {
            return Err(MoneyError::BalanceLimit);
        }
        Ok(Self(value))
    }

    /// The exact, normalised value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// The balance after a deposit, refused when it would pass [`MAX_BALANCE`].
    pub fn credit(self, amount: Amount) -> Result<Balance, MoneyError> {
        Balance::new(self.0 + amount.0)
    }

    /// The balance after a debit, or `None` when the funds are insufficient.
    pub fn debit(self, amount: Amount) -> Option<Balance> {
        Balance::new(self.0 - amount.0).ok()
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses `-?digits(.digits)?([eE][+-]?digits)?` into an exact decimal of at most
/// [`MAX_SCALE`] fractional digits and at most 16 integer digits (enough for every limit above,
/// so that absurd inputs such as `1e400` are refused before any arithmetic).
fn parse_exact(text: &str) -> Result<Decimal, MoneyError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
        return Err(MoneyError::NotANumber);
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !all_digits(digits) {
                return Err(MoneyError::NotANumber);
            }
            // Any exponent this long makes a non-zero value absurdly large or small.
            let magnitude: i64 =
                if digits.len() > 6 { 1_000_000 } else { digits.parse().map_err(|_| MoneyError::NotANumber)? };
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    let frac_part = frac_part.unwrap_or("");
    let mut digits: String = int_part.chars().chain(frac_part.chars()).collect();
    // value = digits * 10^(-scale)
    let mut scale = frac_part.len() as i64 - exponent;
    while digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if scale > MAX_SCALE as i64 {
        return Err(if negative { MoneyError::NotPositive } else { MoneyError::TooPrecise });
    }
    let integer_digits = digits.len() as i64 - scale;
    if integer_digits > 16 {
        return Err(if negative { MoneyError::NotPositive } else { MoneyError::TooLarge });
    }
    let mut unscaled: i128 = digits.parse().map_err(|_| MoneyError::NotANumber)?;
    while scale < 0 {
        unscaled *= 10;
        scale += 1;
    }
    if negative {
        unscaled = -unscaled;
    }
    Decimal::try_from_i128_with_scale(unscaled, scale as u32).map_err(|_| MoneyError::TooLarge)
}

/// Reads money from a JSON number (its exact text) or a JSON string.
pub(crate) fn decimal_from_json(value: &serde_json::Value) -> Result<Decimal, MoneyError> {
    match value {
        serde_json::Value::Number(number) => parse_exact(&number.to_string()),
        serde_json::Value::String(text) => parse_exact(text),
        _ => Err(MoneyError::NotANumber),
    }
}

/// Writes a decimal as a JSON number with exactly its digits.
pub(crate) fn decimal_to_json(value: Decimal) -> serde_json::Value {
    match serde_json::Number::from_str(&value.normalize().to_string()) {
        Ok(number) => serde_json::Value::Number(number),
        // Unreachable for a Decimal's own rendering; a string keeps the digits regardless.
        Err(_) => serde_json::Value::String(value.to_string()),
    }
}

macro_rules! money_serde {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                decimal_to_json(self.0).serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(deserializer)?;
                let decimal = decimal_from_json(&value).map_err(serde::de::Error::custom)?;
                <$type>::new(decimal).map_err(serde::de::Error::custom)
            }
        }
    };
}

money_serde!(Amount);
money_serde!(Balance);

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Result<Amount, MoneyError> {
        text.parse()
    }

    #[test]
    fn limits_are_what_they_say() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_i64));
        assert_eq!(MAX_BALANCE, Decimal::from(1_000_000_000_000_000_i64));
    }

    #[test]
    fn amounts_parse_exactly() {
        for (text, expected) in [
            ("100", "100"),
            ("100.5", "100.5"),
            ("10.50", "10.5"),
            ("0.01", "0.01"),
            ("1.005e2", "100.5"),
            ("1E3", "1000"),
            ("12345e-2", "123.45"),
            ("1000000000000", "1000000000000"),
            ("0001.10", "1.1"),
        ] {
            assert_eq!(amount(text).map(|a| a.to_string()), Ok(expected.to_string()), "{text}");
        }
    }

    #[test]
    fn bad_amounts_are_refused_with_a_reason() {
        use MoneyError::*;
        for (text, expected) in [
            ("0", NotPositive),
            ("0.00", NotPositive),
            ("-1", NotPositive),
            ("-0.001", NotPositive),
            ("10.001", TooPrecise),
            ("1e-3", TooPrecise),
            ("1000000000000.01", TooLarge),
            ("1e400", TooLarge),
            ("1e99999999999", TooLarge),
            ("abc", NotANumber),
            ("NaN", NotANumber),
            ("inf", NotANumber),
            ("", NotANumber),
            (" 1", NotANumber),
            ("1.", NotANumber),
            (".5", NotANumber),
            ("+1", NotANumber),
            ("1e", NotANumber),
            ("0x10", NotANumber),
        ] {
            assert_eq!(amount(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn json_money_keeps_its_digits() {
        let a: Amount = serde_json::from_str("0.1").unwrap();
        let b: Amount = serde_json::from_str("\"0.2\"").unwrap();
        let sum = Balance::ZERO.credit(a).unwrap().credit(b).unwrap();
        assert_eq!(serde_json::to_string(&sum).unwrap(), "0.3");
        let big: Amount = serde_json::from_str("999999999999.99").unwrap();
        assert_eq!(serde_json::to_string(&big).unwrap(), "999999999999.99");
        assert!(serde_json::from_str::<Amount>("true").is_err());
        assert!(serde_json::from_str::<Amount>("0.001").is_err());
    }

    #[test]
    fn amounts_from_json_values_are_exact_and_limited() {
        use serde_json::json;
        let number: serde_json::Value = serde_json::from_str("1.005e2").unwrap();
        assert_eq!(Amount::from_json(&number).map(|a| a.to_string()), Ok("100.5".to_string()));
        assert_eq!(Amount::from_json(&json!("10.50")).map(|a| a.to_string()), Ok("10.5".to_string()));
        assert_eq!(Amount::from_json(&json!("0")), Err(MoneyError::NotPositive));
        assert_eq!(Amount::from_json(&json!("0.001")), Err(MoneyError::TooPrecise));
        assert_eq!(Amount::from_json(&json!("1000000000000.01")), Err(MoneyError::TooLarge));
        for not_money in [json!(null), json!(true), json!([1]), json!({"value": 1}), json!(" 1")] {
            assert_eq!(Amount::from_json(&not_money), Err(MoneyError::NotANumber), "{not_money}");
        }
    }

    #[test]
    fn balance_refuses_overdraft_and_overflow() {
        let one = amount("1").unwrap();
        assert_eq!(Balance::ZERO.debit(one), None);
        let full = Balance::new(MAX_BALANCE).unwrap();
        assert_eq!(full.credit(one), Err(MoneyError::BalanceLimit));
        assert_eq!(full.debit(one).map(|b| b.value()), Some(MAX_BALANCE - Decimal::ONE));
    }
}
