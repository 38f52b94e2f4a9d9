//! The OpenAPI document, generated from the handlers and types, and its YAML twin
//! `swagger.yaml` at the repository root (a test fails when the file drifts; regenerate with
//! `UPDATE_SWAGGER=1 cargo test -p payment-http --test openapi`).
//!
//! Parameters are declared by the extractors that enforce them ([`crate::extract`],
//! [`crate::cursor`]); error responses come from one table of problem codes per route, grouped
//! by the status each code is always answered with, so a response lists exactly its `code`s.

use std::collections::BTreeMap;

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::AllOfBuilder;
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::problem::ErrorCode;
use crate::{accounts, operations};

/// The generated document; use [`document`] rather than this type.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Payment service",
        description = "Accounts, deposits, balance and statement. Money is exact: at most two fractional digits, JSON number or string in, JSON number out. Errors are application/problem+json with a stable `code`; an unknown path answers 404 `not_found`, a known path with another method 405 `method_not_allowed`."
    ),
    paths(
        accounts::create_account,
        accounts::deposit,
        accounts::balance,
        accounts::ledger,
        operations::healthz,
        operations::readyz,
        operations::metrics,
        operations::openapi,
    ),
    components(schemas(
        accounts::AccountCreated,
        accounts::BalanceBody,
        accounts::DepositRequest,
        accounts::LedgerEntryBody,
        accounts::LedgerPage,
        crate::Problem,
        crate::ErrorCode,
    )),
    modifiers(&ProblemResponses, &SecuritySchemes)
)]
pub struct ApiDoc;

/// Adds every route's problem responses from the tables next to the handlers.
struct ProblemResponses;

/// Picks one operation of a path.
type OperationOf = fn(&mut utoipa::openapi::PathItem) -> Option<&mut Operation>;

impl Modify for ProblemResponses {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        let tables: [(&str, OperationOf, &[ErrorCode]); 5] = [
            ("/accounts", |item| item.post.as_mut(), accounts::CREATE_ACCOUNT_PROBLEMS),
            ("/accounts/deposit", |item| item.post.as_mut(), accounts::DEPOSIT_PROBLEMS),
            ("/accounts/balance", |item| item.get.as_mut(), accounts::BALANCE_PROBLEMS),
            ("/accounts/ledger", |item| item.get.as_mut(), accounts::LEDGER_PROBLEMS),
            ("/readyz", |item| item.get.as_mut(), operations::READYZ_PROBLEMS),
        ];
        for (path, operation_of, codes) in tables {
            let Some(operation) = document.paths.paths.get_mut(path).and_then(operation_of) else { continue };
            let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
            for code in codes {
                by_status.entry(code.status().as_u16()).or_default().push(code.as_str());
            }
            for (status, codes) in by_status {
                operation.responses.responses.insert(status.to_string(), RefOr::T(problem_response(&codes)));
            }
        }
    }
}

/// The two ways a caller is identified, by `AUTH_MODE`: the gateway's `X-User-Id` (`header`, the
/// default) or a bearer JWT (`jwt`). Every account route accepts either scheme, whichever the
/// deployment runs; the operation routes need neither.
struct SecuritySchemes;

/// The scheme names in the document.
pub const GATEWAY_SCHEME: &str = "gateway_user";
/// See [`GATEWAY_SCHEME`].
pub const BEARER_SCHEME: &str = "bearer_jwt";

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            GATEWAY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-User-Id",
                "AUTH_MODE=header: the user id, set by a gateway that authenticated the caller and replaced any client value.",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("AUTH_MODE=jwt: RS256, ES256, EdDSA or HS256, with the configured issuer and audience; the user is the configured claim (`sub` by default)."))
                    .build(),
            ),
        );
        for (path, item) in document.paths.paths.iter_mut() {
            if !path.starts_with("/accounts") {
                continue;
            }
            for operation in [item.get.as_mut(), item.post.as_mut()].into_iter().flatten() {
                operation.security = Some(vec![
                    SecurityRequirement::new(GATEWAY_SCHEME, Vec::<String>::new()),
                    SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
                ]);
            }
        }
    }
}

/// A problem+json response whose `code` is one of `codes`.
fn problem_response(codes: &[&str]) -> utoipa::openapi::Response {
    let narrowed = ObjectBuilder::new()
        .property("code", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.iter().copied())));
    let schema = AllOfBuilder::new().item(Ref::from_schema_name("Problem")).item(narrowed);
    let description = codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON, as `/openapi.json` serves it.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The YAML written to `swagger.yaml`.
pub fn document_yaml() -> String {
    document().to_yaml().unwrap_or_default()
}
