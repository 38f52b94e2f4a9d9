//! The account routes of SPEC §3 — create, deposit, balance, statement — each a thin call into a
//! core use case, with the bodies they answer and the money schema the document declares.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use payment_core::domain::{Amount, Balance, MAX_AMOUNT};
use payment_core::ports::Store;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{ObjectBuilder, RefOr, Type};
use utoipa::ToSchema;

use crate::cursor::{self, LedgerQuery};
use crate::extract::{Caller, IdempotencyHeader, JsonBody, RequestIdHeader};
use crate::problem::ApiError;
use crate::ApiState;

/// `POST /accounts` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    /// The caller's id.
    pub user_id: String,
    /// Always `0` for a new account.
    #[schema(value_type = f64)]
    pub balance: Balance,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// A balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceBody {
    /// The caller's id.
    pub user_id: String,
    /// Exact decimal, at most two fractional digits.
    #[schema(value_type = f64)]
    pub balance: Balance,
}

/// `POST /accounts/deposit` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DepositRequest {
    /// `> 0`, `<= 10^12`, at most two fractional digits once trailing zeros are dropped; a JSON
    /// number, or a string matching [`AMOUNT_TEXT_PATTERN`]; read exactly (never through `f64`).
    #[schema(schema_with = amount_schema)]
    pub amount: serde_json::Value,
}

/// The string form of an amount: a plain decimal (no sign, exponent or leading zero) of at most
/// two fractional digits, more than zero and at most 10^12 — exactly what the service accepts as
/// a string, so a document-valid string is never refused (`"0"`, `"0.00"`, `"1e2"`,
/// `"10.500"` are outside; the number form keeps JSON's whole syntax).
pub const AMOUNT_TEXT_PATTERN: &str =
    r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,11}(\.[0-9]{1,2})?|1000000000000(\.00?)?)$";

/// Whether `text` matches [`AMOUNT_TEXT_PATTERN`] (compiled once; the tests compile the same
/// constant, so the refusal of every string below is a bug they would have caught).
fn is_amount_text(text: &str) -> bool {
    static PATTERN: std::sync::OnceLock<Option<regex_lite::Regex>> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex_lite::Regex::new(AMOUNT_TEXT_PATTERN)
            .inspect_err(|error| tracing::error!(%error, "AMOUNT_TEXT_PATTERN does not compile"))
            .ok()
    });
    pattern.as_ref().is_some_and(|p| p.is_match(text))
}

/// The amount's two accepted forms, with the core's limits as numbers.
fn amount_schema() -> impl Into<RefOr<Schema>> {
    // The core's two fractional digits (`MAX_SCALE` is not exported); the constraint test
    // checks the server agrees.
    let step = 0.01;
    let max = MAX_AMOUNT.to_i64().unwrap_or(i64::MAX);
    let number = ObjectBuilder::new()
        .schema_type(Type::Number)
        .exclusive_minimum(Some(0))
        .maximum(Some(max))
        .multiple_of(Some(step));
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(AMOUNT_TEXT_PATTERN))
        .description(Some("A plain decimal: more than 0, at most 1000000000000, at most two fractional digits, no sign, exponent or leading zero."))
        .examples([serde_json::json!("10.50")]);
    OneOfBuilder::new().item(number).item(text)
}

/// One entry of the statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryBody {
    /// The entry's id.
    pub entry_id: uuid::Uuid,
    /// `deposit`, `payment` or `refund`.
    #[schema(example = "refund")]
    pub kind: String,
    /// What moved, always positive.
    #[schema(value_type = f64)]
    pub amount: Amount,
    /// The balance once this entry was applied.
    #[schema(value_type = f64)]
    pub balance_after: Balance,
    /// The order paid or refunded, for payments and refunds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The refund, for refunds (its order's payment is the entry with the same `order_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// When the entry was written.
    pub created_at: DateTime<Utc>,
}

/// A page of the statement, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    /// The entries of this page, newest first.
    pub entries: Vec<LedgerEntryBody>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The problem codes each account route can answer, the source of the document's error
/// responses (grouped there by status). The two with a body check more.
pub(crate) const CREATE_ACCOUNT_PROBLEMS: &[crate::ErrorCode] = {
    use crate::ErrorCode::*;
    &[
        MissingUserId,
        InvalidUserId,
        MissingToken,
        InvalidToken,
        UserMismatch,
        AccountExists,
        Timeout,
        Unavailable,
        Overloaded,
        Internal,
    ]
};
pub(crate) const DEPOSIT_PROBLEMS: &[crate::ErrorCode] = {
    use crate::ErrorCode::*;
    &[
        MissingUserId,
        InvalidUserId,
        MissingToken,
        InvalidToken,
        UserMismatch,
        InvalidIdempotencyKey,
        InvalidRequestId,
        MalformedJson,
        UnsupportedMediaType,
        PayloadTooLarge,
        InvalidAmount,
        BalanceLimit,
        AccountNotFound,
        IdempotencyKeyReused,
        Timeout,
        Unavailable,
        Overloaded,
        Internal,
    ]
};
pub(crate) const BALANCE_PROBLEMS: &[crate::ErrorCode] = {
    use crate::ErrorCode::*;
    &[
        MissingUserId,
        InvalidUserId,
        MissingToken,
        InvalidToken,
        UserMismatch,
        AccountNotFound,
        Timeout,
        Unavailable,
        Overloaded,
        Internal,
    ]
};
pub(crate) const LEDGER_PROBLEMS: &[crate::ErrorCode] = {
    use crate::ErrorCode::*;
    &[
        MissingUserId,
        InvalidUserId,
        MissingToken,
        InvalidToken,
        UserMismatch,
        InvalidQuery,
        InvalidCursor,
        AccountNotFound,
        Timeout,
        Unavailable,
        Overloaded,
        Internal,
    ]
};

/// Opens the caller's account at a zero balance.
#[utoipa::path(post, path = "/accounts", tag = "accounts", params(Caller),
    responses((status = 201, description = "Account created", body = AccountCreated)))]
pub async fn create_account<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
) -> Result<Response, ApiError> {
    let account = state.payments.create_account(&user).await?;
    metrics::counter!("payment_accounts_created_total").increment(1);
    let body = AccountCreated {
        user_id: account.user_id.to_string(),
        balance: account.balance,
        created_at: account.created_at,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Credits the caller, once per idempotency key.
#[utoipa::path(post, path = "/accounts/deposit", tag = "accounts",
    request_body(content = DepositRequest, description = "At most 16 KiB (`payload_too_large`), `application/json` only (`unsupported_media_type`)."),
    params(Caller, IdempotencyHeader, RequestIdHeader),
    responses((status = 200, description = "Credited (or the stored answer to a retry)", body = BalanceBody)))]
pub async fn deposit<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
    IdempotencyHeader(key): IdempotencyHeader,
    RequestIdHeader(request_id): RequestIdHeader,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<BalanceBody>, ApiError> {
    let amount = amount_of(&body)?;
    let receipt = state.payments.deposit_requested(&user, amount, key.as_ref(), request_id.as_ref()).await?;
    if !receipt.replayed {
        metrics::counter!("payment_deposits_total").increment(1);
        // Whole cents keep the counter exact.
        let cents = (amount.value() * Decimal::ONE_HUNDRED).to_u64().unwrap_or(0);
        metrics::counter!("payment_deposited_cents_total").increment(cents);
    }
    Ok(Json(BalanceBody { user_id: receipt.user_id.to_string(), balance: receipt.balance }))
}

fn amount_of(body: &serde_json::Value) -> Result<Amount, ApiError> {
    let object = body.as_object().ok_or_else(|| ApiError::MalformedJson("the body must be a JSON object".into()))?;
    let value = object.get("amount").ok_or_else(|| ApiError::InvalidAmount("amount is required".into()))?;
    if let serde_json::Value::String(text) = value {
        if !is_amount_text(text) {
            return Err(ApiError::InvalidAmount(
                "a string amount is a plain decimal above 0 and at most 1000000000000, with at most two fractional digits"
                    .into(),
            ));
        }
    }
    Amount::from_json(value).map_err(|e| ApiError::InvalidAmount(e.to_string()))
}

/// The caller's balance.
#[utoipa::path(get, path = "/accounts/balance", tag = "accounts", params(Caller),
    responses((status = 200, description = "The balance", body = BalanceBody)))]
pub async fn balance<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
) -> Result<Json<BalanceBody>, ApiError> {
    let account = state.payments.balance(&user).await?;
    Ok(Json(BalanceBody { user_id: account.user_id.to_string(), balance: account.balance }))
}

/// One page of the caller's statement, newest first.
#[utoipa::path(get, path = "/accounts/ledger", tag = "accounts", params(Caller, LedgerQuery),
    responses((status = 200, description = "A page of the statement, newest first", body = LedgerPage)))]
pub async fn ledger<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let statement = state.payments.statement(&user, query.page()?).await?;
    let entries = statement
        .entries
        .into_iter()
        .map(|e| LedgerEntryBody {
            entry_id: e.entry.entry_id,
            kind: e.entry.kind.as_str().to_string(),
            amount: e.entry.amount,
            balance_after: e.entry.balance_after,
            order_id: e.entry.order_id.map(|o| o.to_string()),
            refund_id: e.entry.refund_id.map(|r| r.to_string()),
            created_at: e.entry.created_at,
        })
        .collect();
    Ok(Json(LedgerPage { entries, next: statement.next.map(cursor::encode) }))
}
