//! The OpenAPI document, generated from the handlers and types, and its YAML twin
//! `swagger.yaml` at the repository root (a test fails when the file drifts; regenerate with
//! `UPDATE_SWAGGER=1 cargo test -p payment-http --test openapi`).

use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Payment service",
        description = "Accounts, deposits, balance and statement. Money is exact: at most two fractional digits, JSON number or string in, JSON number out."
    ),
    paths(
        routes::create_account,
        routes::deposit,
        routes::balance,
        routes::ledger,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi,
    ),
    components(schemas(
        routes::AccountCreated,
        routes::BalanceBody,
        routes::DepositRequest,
        routes::LedgerEntryBody,
        routes::LedgerPage,
        crate::Problem,
    ))
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The YAML written to `swagger.yaml`.
pub fn document_yaml() -> String {
    document().to_yaml().unwrap_or_default()
}
