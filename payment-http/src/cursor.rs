//! Statement paging at the edge: the opaque `before` cursor (its codec) and the `limit` and
//! `before` query parameters of `GET /accounts/ledger`, parsed into a core [`StatementPage`].

use payment_core::domain::{LedgerPosition, StatementPage, MAX_STATEMENT_PAGE};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::IntoParams;

use crate::problem::ApiError;

/// The shape of a cursor this API issues: `p` and a positive entry position without leading
/// zeros. Cursors are opaque to clients; the pattern only lets a client refuse garbage early.
pub const CURSOR_PATTERN: &str = "^p[1-9][0-9]{0,18}$";

/// `GET /accounts/ledger` query parameters, both optional.
#[derive(Debug, Default, Deserialize)]
pub struct LedgerQuery {
    /// Page size, `1..=MAX_STATEMENT_PAGE`; kept as text so a bad value is our `invalid_query`.
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

impl LedgerQuery {
    /// The page this query asks for.
    pub fn page(&self) -> Result<StatementPage, ApiError> {
        let limit = match &self.limit {
            None => StatementPage::DEFAULT_LIMIT,
            Some(text) => parse_limit(text)?,
        };
        let before = self.before.as_deref().map(decode).transpose()?;
        StatementPage::new(limit, before).ok_or_else(|| ApiError::InvalidQuery("limit out of range".into()))
    }
}

/// Plain decimal digits only: `+5` or ` 5` are not what the document's `integer` promises.
fn parse_limit(text: &str) -> Result<u16, ApiError> {
    Some(text)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u16>().ok())
        .filter(|limit| (1..=MAX_STATEMENT_PAGE).contains(limit))
        .ok_or_else(|| ApiError::InvalidQuery(format!("limit must be an integer in 1..={MAX_STATEMENT_PAGE}")))
}

impl IntoParams for LedgerQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let limit = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(MAX_STATEMENT_PAGE));
        // Not as `default`: with serde_json's `arbitrary_precision` a JSON value number does not
        // survive the YAML writer of `swagger.yaml`.
        let limit_description = format!(
            "Page size, {} when absent. Outside the range or not an integer: 400 `invalid_query`.",
            StatementPage::DEFAULT_LIMIT
        );
        let before = ObjectBuilder::new().schema_type(Type::String).pattern(Some(CURSOR_PATTERN));
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(limit_description))
                .schema(Some(limit))
                .build(),
            ParameterBuilder::new()
                .name("before")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "The `next` cursor of the previous page; opaque. A cursor this API did not issue: 400 `invalid_cursor`.",
                ))
                .schema(Some(before))
                .build(),
        ]
    }
}

/// Cursors are `p` and the entry position, so the format can change later without clients
/// noticing.
pub fn encode(position: LedgerPosition) -> String {
    format!("p{}", position.0)
}

/// Reads a cursor [`encode`] wrote; anything else is `invalid_cursor`.
pub fn decode(cursor: &str) -> Result<LedgerPosition, ApiError> {
    cursor
        .strip_prefix('p')
        .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'))
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(LedgerPosition)
        .ok_or_else(|| ApiError::InvalidCursor("not a cursor this API issued".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_decodes() {
        for position in [1, 42, i64::MAX] {
            assert_eq!(decode(&encode(LedgerPosition(position))).ok(), Some(LedgerPosition(position)));
        }
        for bad in ["", "p", "p0", "p01", "p-1", "p+1", "p 1", "1", "q1", "p1x", "p9223372036854775808"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_plain_integers_in_range() {
        for (text, ok) in
            [("1", true), ("500", true), ("050", true), ("0", false), ("501", false), ("+5", false), ("", false)]
        {
            assert_eq!(parse_limit(text).is_ok(), ok, "{text:?}");
        }
    }
}
