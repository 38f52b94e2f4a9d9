//! The HTTP API of SPEC §3 on both stores: every row and error of the table, malformed input
//! that must change nothing, statement paging and concurrency.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use payment_core::domain::{Amount, Inbound, MessageId, OrderId, PayOrder, RefundId, RefundOrder, UserId};
use payment_core::ports::Store;
use payment_core::testing::Inspect;
use payment_core::Payments;
use payment_http::{router, ApiState, Limits};
use serde_json::Value;
use tower::ServiceExt;

struct Api<S> {
    app: Router,
    store: S,
    payments: Payments<S>,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

impl<S: Store + Inspect> Api<S> {
    fn new(store: S) -> Self {
        let payments = Payments::new(store.clone());
        let state = ApiState::new(payments.clone());
        Self { app: router(state, Limits::default()), store, payments }
    }

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, content_type, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn create(&self, user: &str) -> Reply {
        self.call("POST", "/accounts", &[("x-user-id", user)], None).await
    }

    async fn deposit(&self, user: &str, body: &str, key: Option<&str>) -> Reply {
        let mut headers = vec![("x-user-id", user), ("content-type", "application/json")];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        self.call("POST", "/accounts/deposit", &headers, Some(body)).await
    }

    async fn pay(&self, id: &str, order: &str, user: &str, amount: &str) {
        let order =
            PayOrder::new(OrderId::new(order).unwrap(), UserId::new(user).unwrap(), amount.parse::<Amount>().unwrap());
        self.payments.pay_orders(&[Inbound::pay(MessageId::new(id).unwrap(), order)]).await.unwrap();
    }
}

impl<S: Store + Inspect> Api<S> {
    async fn refund(&self, id: &str, refund: &str, order: &str, user: &str, amount: &str) {
        let command = RefundOrder::new(
            RefundId::new(refund).unwrap(),
            OrderId::new(order).unwrap(),
            UserId::new(user).unwrap(),
            Some(amount.parse::<Amount>().unwrap()),
        );
        self.payments.pay_orders(&[Inbound::refund(MessageId::new(id).unwrap(), command)]).await.unwrap();
    }
}

fn problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json", "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["code"], code, "{}", reply.text);
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
}

async fn every_row_of_the_table<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    let created = api.create("u1").await;
    assert_eq!(created.status, StatusCode::CREATED);
    let body = created.json();
    assert_eq!((body["user_id"].as_str(), body["balance"].to_string().as_str()), (Some("u1"), "0"));
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap_or_default()).is_ok());
    problem(&api.create("u1").await, 409, "account_exists");

    let first = api.deposit("u1", r#"{"amount": 0.1}"#, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second = api.deposit("u1", r#"{"amount": "0.2"}"#, None).await;
    assert_eq!(second.text, r#"{"user_id":"u1","balance":0.3}"#, "exact money, a JSON number");
    problem(&api.deposit("nobody", r#"{"amount": 1}"#, None).await, 404, "account_not_found");
    problem(&api.deposit("u1", r#"{"amount": 0}"#, None).await, 422, "invalid_amount");
    api.create("rich").await;
    for _ in 0..1000 {
        api.deposit("rich", r#"{"amount": 1000000000000}"#, None).await;
    }
    problem(&api.deposit("rich", r#"{"amount": 0.01}"#, None).await, 422, "balance_limit");
    problem(&api.deposit("u1", "{", None).await, 400, "malformed_json");
    let text =
        api.call("POST", "/accounts/deposit", &[("x-user-id", "u1"), ("content-type", "text/plain")], Some("{}")).await;
    problem(&text, 415, "unsupported_media_type");
    problem(
        &api.deposit("u1", &format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(17 * 1024)), None).await,
        413,
        "payload_too_large",
    );

    let retried = api.deposit("u1", r#"{"amount": "5"}"#, Some("k1")).await;
    let again = api.deposit("u1", r#"{"amount": 5}"#, Some("k1")).await;
    assert_eq!((retried.status, again.text.clone()), (StatusCode::OK, retried.text.clone()), "the first answer again");
    problem(&api.deposit("u1", r#"{"amount": 6}"#, Some("k1")).await, 409, "idempotency_key_reused");

    let balance = api.call("GET", "/accounts/balance", &[("x-user-id", "u1")], None).await;
    assert_eq!(balance.text, r#"{"user_id":"u1","balance":5.3}"#);
    problem(&api.call("GET", "/accounts/balance", &[("x-user-id", "nobody")], None).await, 404, "account_not_found");
    problem(&api.call("GET", "/accounts/balance", &[], None).await, 401, "missing_user_id");
    problem(&api.call("GET", "/accounts/balance", &[("x-user-id", "bad user")], None).await, 400, "invalid_user_id");

    let ledger = api.call("GET", "/accounts/ledger", &[("x-user-id", "u1")], None).await;
    assert_eq!(ledger.status, StatusCode::OK);
    assert_eq!(ledger.json()["entries"].as_array().map(Vec::len), Some(3));
    problem(&api.call("GET", "/accounts/ledger", &[("x-user-id", "nobody")], None).await, 404, "account_not_found");
    problem(&api.call("GET", "/accounts/ledger?before=zzz", &[("x-user-id", "u1")], None).await, 400, "invalid_cursor");

    assert_eq!(api.call("GET", "/healthz", &[], None).await.status, StatusCode::OK);
    assert_eq!(api.call("GET", "/readyz", &[], None).await.status, StatusCode::OK);
    assert_eq!(api.call("GET", "/metrics", &[], None).await.status, StatusCode::OK);
    let doc = api.call("GET", "/openapi.json", &[], None).await;
    assert!(doc.json()["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
}

async fn readiness_reflects_the_extra_check<S: Store + Inspect>(store: S) {
    let payments = Payments::new(store);
    let check: payment_http::ReadinessCheck = Arc::new(|| Box::pin(async { Err("kafka unreachable".to_string()) }));
    let app = router(ApiState { readiness: Some(check), ..ApiState::new(payments) }, Limits::default());
    let request = Request::builder().uri("/readyz").body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// `(method, path, headers, body, status, code)`: each must fail as documented and change nothing.
#[allow(clippy::type_complexity)]
fn malformed() -> Vec<(&'static str, String, Vec<(&'static str, String)>, Option<String>, u16, &'static str)> {
    let json = |user: &str| vec![("x-user-id", user.to_string()), ("content-type", "application/json".to_string())];
    let deposit = |body: &str, status: u16, code: &'static str| {
        ("POST", "/accounts/deposit".to_string(), json("u1"), Some(body.to_string()), status, code)
    };
    // A valid deposit but for one extra header.
    let deposit_with = |header: &'static str, value: String, code: &'static str| {
        let mut headers = json("u1");
        headers.push((header, value));
        ("POST", "/accounts/deposit".to_string(), headers, Some(r#"{"amount":1}"#.to_string()), 400, code)
    };
    vec![
        ("POST", "/accounts".into(), vec![], None, 401, "missing_user_id"),
        ("POST", "/accounts".into(), vec![("x-user-id", "".into())], None, 400, "invalid_user_id"),
        ("POST", "/accounts".into(), vec![("x-user-id", "a b".into())], None, 400, "invalid_user_id"),
        ("POST", "/accounts".into(), vec![("x-user-id", "x".repeat(65))], None, 400, "invalid_user_id"),
        ("POST", "/accounts".into(), vec![("x-user-id", "a/b".into())], None, 400, "invalid_user_id"),
        ("POST", "/accounts".into(), vec![("x-user-id", "u1".into())], None, 409, "account_exists"),
        (
            "POST",
            "/accounts/deposit".into(),
            vec![("content-type", "application/json".into())],
            Some(r#"{"amount":1}"#.into()),
            401,
            "missing_user_id",
        ),
        (
            "POST",
            "/accounts/deposit".into(),
            vec![("x-user-id", "u1".into())],
            Some(r#"{"amount":1}"#.into()),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/accounts/deposit".into(),
            vec![("x-user-id", "u1".into()), ("content-type", "text/json".into())],
            Some(r#"{"amount":1}"#.into()),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/accounts/deposit".into(),
            vec![("x-user-id", "u1".into()), ("content-type", "application/x-www-form-urlencoded".into())],
            Some("amount=1".into()),
            415,
            "unsupported_media_type",
        ),
        deposit("", 400, "malformed_json"),
        deposit("{", 400, "malformed_json"),
        deposit("not json", 400, "malformed_json"),
        deposit("[1]", 400, "malformed_json"),
        deposit("\"1\"", 400, "malformed_json"),
        deposit("null", 400, "malformed_json"),
        deposit(r#"{"amount": 1,}"#, 400, "malformed_json"),
        deposit(r#"{"amount": NaN}"#, 400, "malformed_json"),
        deposit("{}", 422, "invalid_amount"),
        deposit(r#"{"amount": -1}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": 0}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": "0.00"}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": 1e400}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": 0.001}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": "abc"}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": "NaN"}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": "Infinity"}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": 1000000000000.01}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": 99999999999999999999999999999999999999}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": {"value": 1}}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": [1]}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": true}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": null}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": " 1"}"#, 422, "invalid_amount"),
        deposit(r#"{"amount": "1,5"}"#, 422, "invalid_amount"),
        deposit(&format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(16 * 1024)), 413, "payload_too_large"),
        deposit_with("idempotency-key", "k".repeat(256), "invalid_idempotency_key"),
        deposit_with("x-request-id", "r".repeat(129), "invalid_request_id"),
        deposit_with("x-request-id", "has space".to_string(), "invalid_request_id"),
        ("POST", "/accounts/deposit".into(), json("ghost"), Some(r#"{"amount":1}"#.into()), 404, "account_not_found"),
        ("GET", "/accounts/balance".into(), vec![], None, 401, "missing_user_id"),
        ("GET", "/accounts/ledger?limit=0".into(), json("u1"), None, 400, "invalid_query"),
        ("GET", "/accounts/ledger?limit=501".into(), json("u1"), None, 400, "invalid_query"),
        ("GET", "/accounts/ledger?limit=abc".into(), json("u1"), None, 400, "invalid_query"),
        ("GET", "/accounts/ledger?before=p0".into(), json("u1"), None, 400, "invalid_cursor"),
        ("GET", "/accounts/ledger?before=-1".into(), json("u1"), None, 400, "invalid_cursor"),
        ("GET", "/accounts/ledger?before=p99999999999999999999".into(), json("u1"), None, 400, "invalid_cursor"),
    ]
}

async fn malformed_requests_change_nothing<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    api.create("u1").await;
    api.deposit("u1", r#"{"amount": 10}"#, Some("k")).await;
    let before = api.store.snapshot().await;
    let cases = malformed();
    assert!(cases.len() >= 30);
    for (method, path, headers, body, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = api.call(method, &path, &headers, body.as_deref()).await;
        assert!(!reply.status.is_server_error(), "{method} {path}: {}", reply.text);
        assert_eq!((reply.status.as_u16(), reply.code()), (status, code.to_string()), "{method} {path} {body:?}");
        assert_eq!(reply.content_type, "application/problem+json");
    }
    assert_eq!(api.store.snapshot().await, before, "no malformed request changed the store");
}

async fn the_statement_pages_back_complete_and_chained<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    api.create("u1").await;
    for i in 1..=9 {
        api.deposit("u1", &format!(r#"{{"amount": "{i}.25"}}"#), None).await;
        api.pay(&format!("m{i}"), &format!("o{i}"), "u1", "1").await;
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut uri = "/accounts/ledger?limit=4".to_string();
    loop {
        let page = api.call("GET", &uri, &[("x-user-id", "u1")], None).await.json();
        let batch = page["entries"].as_array().cloned().unwrap_or_default();
        assert!(batch.len() <= 4);
        entries.extend(batch);
        match page["next"].as_str() {
            Some(next) => uri = format!("/accounts/ledger?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(entries.len(), 18, "complete");
    let ids: std::collections::BTreeSet<_> = entries.iter().map(|e| e["entry_id"].to_string()).collect();
    assert_eq!(ids.len(), 18, "no repeats");
    let money = |v: &Value| v.to_string().parse::<rust_decimal::Decimal>().unwrap();
    for pair in entries.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let delta = if newer["kind"] == "deposit" { money(&newer["amount"]) } else { -money(&newer["amount"]) };
        assert_eq!(money(&older["balance_after"]) + delta, money(&newer["balance_after"]), "newest first, chained");
        // As instants: RFC 3339 text drops trailing fractional zeros, so `…:01Z` sorts after `…:01.5Z`.
        let at = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("created_at of {v}: {e}"))
        };
        assert!(at(newer) >= at(older), "newest first: {newer} before {older}");
    }
    assert_eq!(entries[0]["kind"], "payment");
    assert_eq!(entries[0]["order_id"], "o9");
    assert_eq!(money(&entries[0]["balance_after"]), "38.25".parse().unwrap());
    assert!(entries.last().is_some_and(|e| e.get("order_id").is_none() && e["kind"] == "deposit"));
}

async fn concurrent_deposits_are_exact_and_idempotent_once<S: Store + Inspect>(store: S) {
    let api = Arc::new(Api::new(store));
    api.create("u1").await;
    let cents: Vec<_> = (0..100)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.deposit("u1", r#"{"amount": 0.01}"#, None).await.status })
        })
        .collect();
    for task in cents {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let balance = api.call("GET", "/accounts/balance", &[("x-user-id", "u1")], None).await;
    assert_eq!(balance.text, r#"{"user_id":"u1","balance":1}"#);

    let retries: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.deposit("u1", r#"{"amount": "2.50"}"#, Some("same-key")).await })
        })
        .collect();
    for task in retries {
        let reply = task.await.unwrap();
        assert_eq!(reply.text, r#"{"user_id":"u1","balance":3.5}"#, "every retry gets the first answer");
    }
    let balance = api.call("GET", "/accounts/balance", &[("x-user-id", "u1")], None).await;
    assert_eq!(balance.json()["balance"].to_string(), "3.5", "credited once");
}

/// A header line twice is refused, whichever of the two values is valid: a gateway that appends
/// `X-User-Id` instead of replacing it must not let the client's own line through.
async fn repeated_identity_headers_are_refused_and_change_nothing<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    api.create("u1").await;
    api.create("u2").await;
    let before = api.store.snapshot().await;
    let json = ("content-type", "application/json");
    let body = Some(r#"{"amount": 1}"#);
    for users in [["u1", "u2"], ["u1", "u1"], ["u1", "bad user"]] {
        let twice = [("x-user-id", users[0]), ("x-user-id", users[1])];
        problem(
            &api.call("POST", "/accounts", &[("x-user-id", "u3"), ("x-user-id", users[0])], None).await,
            400,
            "invalid_user_id",
        );
        problem(
            &api.call("POST", "/accounts/deposit", &[twice[0], twice[1], json], body).await,
            400,
            "invalid_user_id",
        );
        problem(&api.call("GET", "/accounts/balance", &twice, None).await, 400, "invalid_user_id");
        problem(&api.call("GET", "/accounts/ledger", &twice, None).await, 400, "invalid_user_id");
    }
    let keys = [("x-user-id", "u1"), json, ("idempotency-key", "k1"), ("idempotency-key", "k2")];
    problem(&api.call("POST", "/accounts/deposit", &keys, body).await, 400, "invalid_idempotency_key");
    let requests = [("x-user-id", "u1"), json, ("x-request-id", "a"), ("x-request-id", "b")];
    problem(&api.call("POST", "/accounts/deposit", &requests, body).await, 400, "invalid_request_id");
    assert_eq!(api.store.snapshot().await, before, "nothing changed");
    let once =
        api.call("POST", "/accounts/deposit", &[("x-user-id", "u1"), json, ("idempotency-key", "k1")], body).await;
    assert_eq!(once.status, StatusCode::OK, "one line of each is fine: {}", once.text);
}

/// The statement shows a refund as a `refund` entry with its order and refund ids, after the
/// payment it gives money back for.
async fn the_statement_shows_refunds_with_their_order_and_refund<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    api.create("u1").await;
    api.deposit("u1", r#"{"amount": 10}"#, None).await;
    api.pay("m1", "o1", "u1", "4").await;
    api.refund("m2", "r1", "o1", "u1", "1.5").await;
    let ledger = api.call("GET", "/accounts/ledger", &[("x-user-id", "u1")], None).await;
    let entries = ledger.json()["entries"].clone();
    let newest = &entries[0];
    assert_eq!(newest["kind"], "refund", "{entries}");
    assert_eq!((newest["order_id"].as_str(), newest["refund_id"].as_str()), (Some("o1"), Some("r1")));
    assert_eq!((newest["amount"].to_string(), newest["balance_after"].to_string()), ("1.5".into(), "7.5".into()));
    assert_eq!((entries[1]["kind"].as_str(), entries[1]["order_id"].as_str()), (Some("payment"), Some("o1")));
    assert!(entries[1].get("refund_id").is_none() && entries[2].get("order_id").is_none());
}

/// A deposit without an `Idempotency-Key` records the request's `X-Request-Id` as its ledger
/// entry's cause — the one given, or the one made up and echoed — so an auditor can follow the
/// entry to the request's log lines.
async fn an_unkeyed_deposit_records_its_request_id<S: Store + Inspect>(store: S) {
    let api = Api::new(store);
    api.create("u1").await;
    let json = ("content-type", "application/json");
    let given = api
        .call(
            "POST",
            "/accounts/deposit",
            &[("x-user-id", "u1"), json, ("x-request-id", "req-42")],
            Some(r#"{"amount": 3}"#),
        )
        .await;
    assert_eq!(given.status, StatusCode::OK, "{}", given.text);
    let made_up = api.app.clone().oneshot(
        Request::post("/accounts/deposit")
            .header("x-user-id", "u1")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"amount": 4}"#))
            .unwrap(),
    );
    let made_up = made_up.await.unwrap();
    assert_eq!(made_up.status(), StatusCode::OK);
    let echoed = made_up.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let echoed = echoed.expect("a request id is made up and echoed");
    let snapshot = api.store.snapshot().await;
    let causes: Vec<Option<String>> =
        snapshot.ledger[&UserId::new("u1").unwrap()].iter().map(|e| e.cause.as_ref().map(|c| c.stored())).collect();
    assert_eq!(causes, [Some("request:req-42".to_string()), Some(format!("request:{echoed}"))]);
}

payment_postgres::on_both_stores!(
    an_unkeyed_deposit_records_its_request_id,
    the_statement_shows_refunds_with_their_order_and_refund,
    every_row_of_the_table,
    repeated_identity_headers_are_refused_and_change_nothing,
    readiness_reflects_the_extra_check,
    malformed_requests_change_nothing,
    the_statement_pages_back_complete_and_chained,
    concurrent_deposits_are_exact_and_idempotent_once,
);
