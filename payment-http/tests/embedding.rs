//! The routers a host embeds: `accounts_router` merges and nests into an application that has its
//! own fallback and its own `/healthz`, and the standalone `router` answers unknown routes and
//! wrong methods with problem+json.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use payment_core::memory::MemoryStore;
use payment_core::Payments;
use payment_http::{accounts_router, operations_router, router, with_problem_fallbacks, ApiState, Limits};
use serde_json::Value;
use tower::ServiceExt;

fn state() -> ApiState<MemoryStore> {
    ApiState::new(Payments::new(MemoryStore::new()))
}

struct Reply {
    status: StatusCode,
    content_type: String,
    allow: String,
    text: String,
}

async fn call(app: &Router, method: &str, uri: &str, user: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (status, content_type, allow) = (response.status(), header("content-type"), header("allow"));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, content_type, allow, text: String::from_utf8_lossy(&bytes).into_owned() }
}

fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json", "{}", reply.text);
    let body: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64()),
        (Some(code), Some(u64::from(status))),
        "{}",
        reply.text
    );
}

fn host() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "host healthz" }))
        .route("/orders", get(|| async { "host orders" }))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "host fallback") })
}

#[tokio::test]
async fn accounts_nest_and_merge_into_a_host_with_its_own_fallback_and_healthz() {
    let nested = host().nest("/payments", accounts_router(state(), Limits::default()));
    let created = call(&nested, "POST", "/payments/accounts", Some("u1")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let balance = call(&nested, "GET", "/payments/accounts/balance", Some("u1")).await;
    assert_eq!((balance.status, balance.text.as_str()), (StatusCode::OK, r#"{"user_id":"u1","balance":0}"#));
    assert_problem(&call(&nested, "GET", "/payments/accounts/balance", None).await, 401, "missing_user_id");
    assert_eq!(call(&nested, "GET", "/healthz", None).await.text, "host healthz");
    assert_eq!(call(&nested, "GET", "/orders", None).await.text, "host orders");
    assert_eq!(call(&nested, "GET", "/payments/nowhere", None).await.status, StatusCode::IM_A_TEAPOT, "the host's");
    assert_eq!(call(&nested, "GET", "/accounts/balance", Some("u1")).await.status, StatusCode::IM_A_TEAPOT);

    // Merged at the root too, in either order: neither side panics over the fallback.
    let merged = host().merge(accounts_router(state(), Limits::default()));
    assert_eq!(call(&merged, "POST", "/accounts", Some("u1")).await.status, StatusCode::CREATED);
    assert_eq!(call(&merged, "GET", "/healthz", None).await.text, "host healthz");
    assert_eq!(call(&merged, "GET", "/nowhere", None).await.status, StatusCode::IM_A_TEAPOT);
    let merged_into = accounts_router(state(), Limits::default()).merge(host());
    assert_eq!(call(&merged_into, "POST", "/accounts", Some("u1")).await.status, StatusCode::CREATED);
    assert_eq!(call(&merged_into, "GET", "/nowhere", None).await.status, StatusCode::IM_A_TEAPOT);

    // A host without operations routes of its own takes ours beside the accounts.
    let both = Router::new()
        .nest("/payments", accounts_router(state(), Limits::default()))
        .merge(operations_router(state(), Limits::default()));
    assert_eq!(call(&both, "GET", "/readyz", None).await.status, StatusCode::OK);
    assert_eq!(call(&both, "GET", "/openapi.json", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_host_can_take_the_problem_fallbacks_after_nesting() {
    let app = with_problem_fallbacks(
        Router::new()
            .route("/orders", get(|| async { "host orders" }))
            .nest("/payments", accounts_router(state(), Limits::default())),
    );
    assert_problem(&call(&app, "GET", "/nowhere", None).await, 404, "not_found");
    let wrong = call(&app, "DELETE", "/payments/accounts/balance", Some("u1")).await;
    assert_problem(&wrong, 405, "method_not_allowed");
    assert_eq!(wrong.allow, "GET,HEAD");
    assert_problem(&call(&app, "POST", "/orders", None).await, 405, "method_not_allowed");
}

#[tokio::test]
async fn the_standalone_router_answers_unknown_routes_and_wrong_methods_with_problems() {
    let app = router(state(), Limits::default());
    for uri in ["/", "/nowhere", "/accounts/", "/accounts/nowhere", "/payments/accounts"] {
        assert_problem(&call(&app, "GET", uri, Some("u1")).await, 404, "not_found");
    }
    for (method, uri, allow) in [
        ("GET", "/accounts", "POST"),
        ("DELETE", "/accounts", "POST"),
        ("GET", "/accounts/deposit", "POST"),
        ("POST", "/accounts/balance", "GET,HEAD"),
        ("PUT", "/accounts/ledger", "GET,HEAD"),
        ("POST", "/healthz", "GET,HEAD"),
        ("DELETE", "/openapi.json", "GET,HEAD"),
    ] {
        let reply = call(&app, method, uri, Some("u1")).await;
        assert_problem(&reply, 405, "method_not_allowed");
        assert_eq!(reply.allow, allow, "{method} {uri}");
    }
    let ok = call(&app, "POST", "/accounts", Some("u1")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
}
