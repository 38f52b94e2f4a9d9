//! The OpenAPI document is valid OpenAPI 3, covers every route, and `swagger.yaml` matches it.

use std::path::PathBuf;

use payment_http::openapi;

#[test]
fn the_document_is_openapi_3_and_covers_every_route() {
    let document: serde_json::Value = serde_json::from_str(&openapi::document_json()).unwrap();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let parsed: Result<utoipa::openapi::OpenApi, _> = serde_json::from_value(document.clone());
    assert!(parsed.is_ok(), "{:?}", parsed.err());
    for (path, method) in [
        ("/accounts", "post"),
        ("/accounts/deposit", "post"),
        ("/accounts/balance", "get"),
        ("/accounts/ledger", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} documented");
    }
    let deposit = &document["paths"]["/accounts/deposit"]["post"];
    for status in ["200", "400", "401", "404", "409", "413", "415", "422"] {
        assert!(deposit["responses"][status].is_object(), "deposit documents {status}");
    }
    let headers: Vec<&str> =
        deposit["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(headers, ["X-User-Id", "Idempotency-Key", "X-Request-Id"]);
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn swagger_yaml_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../swagger.yaml");
    let generated = openapi::document_yaml();
    if std::env::var_os("UPDATE_SWAGGER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "swagger.yaml drifted from the code; regenerate: UPDATE_SWAGGER=1 cargo test -p payment-http --test openapi"
    );
}
