//! The handlers of SPEC §3, each a thin call into a core use case.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use payment_core::domain::{Amount, LedgerPosition, StatementPage, MAX_STATEMENT_PAGE};
use payment_core::ports::Store;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Caller, IdempotencyHeader, JsonBody};
use crate::problem::ApiError;
use crate::ApiState;

/// `POST /accounts` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    pub user_id: String,
    /// Always `0` for a new account.
    #[schema(value_type = f64)]
    pub balance: payment_core::domain::Balance,
    pub created_at: DateTime<Utc>,
}

/// A balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceBody {
    pub user_id: String,
    /// Exact decimal, at most two fractional digits.
    #[schema(value_type = f64)]
    pub balance: payment_core::domain::Balance,
}

/// `POST /accounts/deposit` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DepositRequest {
    /// `> 0`, `<= 10^12`, at most two fractional digits; a JSON number or a string, read exactly.
    #[schema(value_type = String, example = "10.50")]
    pub amount: serde_json::Value,
}

/// One entry of the statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryBody {
    pub entry_id: uuid::Uuid,
    /// `deposit` or `payment`.
    pub kind: String,
    #[schema(value_type = f64)]
    pub amount: Amount,
    #[schema(value_type = f64)]
    pub balance_after: payment_core::domain::Balance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A page of the statement, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntryBody>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /accounts/ledger` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LedgerQuery {
    /// 1..=500, default 50.
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

#[utoipa::path(post, path = "/accounts", tag = "accounts",
    params(("X-User-Id" = String, Header, description = "The caller, set by the gateway")),
    responses(
        (status = 201, description = "Account created", body = AccountCreated),
        (status = 400, description = "Malformed X-User-Id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "X-User-Id missing", body = crate::Problem, content_type = "application/problem+json"),
        (status = 409, description = "account_exists", body = crate::Problem, content_type = "application/problem+json"),
    ))]
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

#[utoipa::path(post, path = "/accounts/deposit", tag = "accounts", request_body = DepositRequest,
    params(
        ("X-User-Id" = String, Header, description = "The caller, set by the gateway"),
        ("Idempotency-Key" = Option<String>, Header, description = "1..=255 characters; a retry with the same key and body gets the first answer and credits once"),
    ),
    responses(
        (status = 200, description = "Credited (or the stored answer to a retry)", body = BalanceBody),
        (status = 400, description = "malformed_json, invalid_user_id or invalid_idempotency_key", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing_user_id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 404, description = "account_not_found", body = crate::Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_key_reused", body = crate::Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large (body > 16 KiB)", body = crate::Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_amount or balance_limit", body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn deposit<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<BalanceBody>, ApiError> {
    let amount = amount_of(&body)?;
    let receipt = state.payments.deposit(&user, amount, key.as_ref()).await?;
    if !receipt.replayed {
        metrics::counter!("payment_deposits_total").increment(1);
        // Whole cents keep the counter exact.
        let cents = (amount.value() * rust_decimal::Decimal::ONE_HUNDRED).to_u64().unwrap_or(0);
        metrics::counter!("payment_deposited_cents_total").increment(cents);
    }
    Ok(Json(BalanceBody { user_id: receipt.user_id.to_string(), balance: receipt.balance }))
}

fn amount_of(body: &serde_json::Value) -> Result<Amount, ApiError> {
    let object = body.as_object().ok_or_else(|| ApiError::MalformedJson("the body must be a JSON object".into()))?;
    let value = object.get("amount").ok_or_else(|| ApiError::InvalidAmount("amount is required".into()))?;
    let text = match value {
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => text.clone(),
        _ => return Err(ApiError::InvalidAmount("amount must be a JSON number or string".into())),
    };
    text.parse::<Amount>().map_err(|e| ApiError::InvalidAmount(e.to_string()))
}

#[utoipa::path(get, path = "/accounts/balance", tag = "accounts",
    params(("X-User-Id" = String, Header, description = "The caller, set by the gateway")),
    responses(
        (status = 200, description = "The balance", body = BalanceBody),
        (status = 400, description = "invalid_user_id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing_user_id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 404, description = "account_not_found", body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn balance<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
) -> Result<Json<BalanceBody>, ApiError> {
    let account = state.payments.balance(&user).await?;
    Ok(Json(BalanceBody { user_id: account.user_id.to_string(), balance: account.balance }))
}

#[utoipa::path(get, path = "/accounts/ledger", tag = "accounts",
    params(("X-User-Id" = String, Header, description = "The caller, set by the gateway"), LedgerQuery),
    responses(
        (status = 200, description = "A page of the statement, newest first", body = LedgerPage),
        (status = 400, description = "invalid_cursor, invalid_query or invalid_user_id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing_user_id", body = crate::Problem, content_type = "application/problem+json"),
        (status = 404, description = "account_not_found", body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn ledger<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    Caller(user): Caller,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let limit = match query.limit {
        None => StatementPage::DEFAULT_LIMIT,
        Some(text) => {
            text.parse::<u16>().ok().filter(|l| (1..=MAX_STATEMENT_PAGE).contains(l)).ok_or_else(|| {
                ApiError::InvalidQuery(format!("limit must be an integer in 1..={MAX_STATEMENT_PAGE}"))
            })?
        }
    };
    let before = query.before.map(|cursor| decode_cursor(&cursor)).transpose()?;
    let page = StatementPage::new(limit, before).ok_or_else(|| ApiError::InvalidQuery("limit out of range".into()))?;
    let statement = state.payments.statement(&user, page).await?;
    let entries = statement
        .entries
        .into_iter()
        .map(|e| LedgerEntryBody {
            entry_id: e.entry.entry_id,
            kind: e.entry.kind.as_str().to_string(),
            amount: e.entry.amount,
            balance_after: e.entry.balance_after,
            order_id: e.entry.order_id.map(|o| o.to_string()),
            created_at: e.entry.created_at,
        })
        .collect();
    Ok(Json(LedgerPage { entries, next: statement.next.map(encode_cursor) }))
}

/// Cursors are opaque to clients: `p` and the entry position, so the format can change later.
fn encode_cursor(position: LedgerPosition) -> String {
    format!("p{}", position.0)
}

fn decode_cursor(cursor: &str) -> Result<LedgerPosition, ApiError> {
    cursor
        .strip_prefix('p')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(LedgerPosition)
        .ok_or_else(|| ApiError::InvalidCursor("not a cursor this API issued".into()))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Storage (and Kafka, if configured) usable"),
    (status = 503, description = "not_ready", body = crate::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz<S: Store>(State(state): State<Arc<ApiState<S>>>) -> Result<&'static str, ApiError> {
    state.payments.store().ping().await.map_err(|e| ApiError::NotReady(e.to_string()))?;
    if let Some(check) = &state.readiness {
        check().await.map_err(ApiError::NotReady)?;
    }
    Ok("ready")
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics<S: Store>(State(state): State<Arc<ApiState<S>>>) -> Response {
    let text = state.metrics.as_ref().map(|handle| handle.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}
