//! The trust boundary of the real binary: in `AUTH_MODE=jwt` a forged `X-User-Id` and a token of
//! another key are refused and a valid token served; with `ADMIN_ADDR` the operation routes are
//! on the admin listener only; `payment-service reconcile` passes on an intact ledger and finds
//! a balance edited behind the service's back; the database refuses edits of the ledger.

#[allow(dead_code)]
mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{free_port, one_at_a_time, Service};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

const SECRET: &[u8] = b"an-hs256-secret-for-the-trust-test-0123456789";

fn token(secret: &[u8], user: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"sub": user, "iss": "https://id.test", "aud": "payments", "exp": now + 600});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).expect("a token")
}

fn secret_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("payment-service-trust-{}.secret", std::process::id()));
    std::fs::write(&path, SECRET).expect("the secret file");
    path
}

async fn wait_ready(http: &reqwest::Client, url: &str, service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(url).timeout(Duration::from_secs(5)).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "not ready at {url}:\n{}", service.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn jwt_mode_and_the_admin_listener() {
    let _one = one_at_a_time();
    let secret = secret_file();
    let admin = format!("127.0.0.1:{}", free_port());
    let service = Service::spawn(
        "trust-jwt",
        &[
            ("AUTH_MODE", "jwt"),
            ("JWT_SECRET_FILE", secret.to_str().unwrap_or_default()),
            ("JWT_ISSUER", "https://id.test"),
            ("JWT_AUDIENCE", "payments"),
            ("ADMIN_ADDR", &admin),
        ],
    );
    payment_core::testing::block_on(async {
        let http = reqwest::Client::new();
        let admin_url = format!("http://{admin}");
        wait_ready(&http, &format!("{admin_url}/readyz"), &service).await;
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            let on_admin = http.get(format!("{admin_url}{path}")).send().await.expect("admin answers");
            assert_eq!(on_admin.status(), StatusCode::OK, "{path} on the admin listener");
            let on_public = http.get(format!("{}{path}", service.base_url)).send().await.expect("public answers");
            assert_eq!(on_public.status(), StatusCode::NOT_FOUND, "{path} is not on the public listener");
        }
        let accounts_on_admin = http.get(format!("{admin_url}/accounts/balance")).send().await.expect("admin answers");
        assert_eq!(accounts_on_admin.status(), StatusCode::NOT_FOUND, "no account routes on the admin listener");

        let url = |path: &str| format!("{}{path}", service.base_url);
        let valid = token(SECRET, "alice");
        let created = http.post(url("/accounts")).bearer_auth(&valid).send().await.expect("an answer");
        assert_eq!(created.status(), StatusCode::CREATED);
        let forged = http.get(url("/accounts/balance")).header("x-user-id", "alice").send().await.expect("an answer");
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        assert!(forged
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer"))));
        let other_key = token(b"another-secret-that-is-long-enough-to-be-accepted", "alice");
        let stranger = http.get(url("/accounts/balance")).bearer_auth(other_key).send().await.expect("an answer");
        assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
        let mismatch = http
            .get(url("/accounts/balance"))
            .bearer_auth(&valid)
            .header("x-user-id", "bob")
            .send()
            .await
            .expect("an answer");
        assert_eq!(mismatch.status(), StatusCode::FORBIDDEN);
        let balance = http.get(url("/accounts/balance")).bearer_auth(&valid).send().await.expect("an answer");
        assert_eq!(balance.status(), StatusCode::OK);
        let body: serde_json::Value = balance.json().await.expect("JSON");
        assert_eq!(body["user_id"], "alice");
    });
    let _ = std::fs::remove_file(secret);
}

#[test]
fn jwt_mode_without_keys_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_payment-service"))
        .env_clear()
        .env("AUTH_MODE", "jwt")
        .env("JWT_ISSUER", "https://id.test")
        .env("JWT_AUDIENCE", "payments")
        .env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("run payment-service");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("no verification key"), "{text}");
}

fn reconcile(database_url: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_payment-service"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .arg("reconcile")
        .output()
        .expect("run payment-service reconcile");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn reconcile_finds_a_balance_edited_behind_the_services_back() {
    let _one = one_at_a_time();
    payment_core::testing::block_on(async {
        let database_url = payment_postgres::testing::fresh_database().await;
        let service = Service::spawn("trust-reconcile", &[("DATABASE_URL", &database_url)]);
        let http = reqwest::Client::new();
        wait_ready(&http, &format!("{}/readyz", service.base_url), &service).await;
        for user in ["u1", "u2"] {
            let url = format!("{}/accounts", service.base_url);
            assert!(http.post(url).header("x-user-id", user).send().await.is_ok_and(|r| r.status().is_success()));
            let deposit = http
                .post(format!("{}/accounts/deposit", service.base_url))
                .header("x-user-id", user)
                .header("idempotency-key", "first")
                .json(&json!({"amount": "10.50"}))
                .send()
                .await;
            assert!(deposit.is_ok_and(|r| r.status().is_success()));
        }
        drop(service);
        let (code, report) = reconcile(&database_url);
        assert_eq!(code, Some(0), "an intact ledger reconciles:\n{report}");
        assert!(report.contains("ledger consistent"), "{report}");

        let pool = sqlx::PgPool::connect(&database_url).await.expect("connect");
        let cause: Option<String> = sqlx::query_scalar("SELECT cause FROM ledger_entries WHERE user_id = 'u1'")
            .fetch_one(&pool)
            .await
            .expect("u1's entry");
        assert_eq!(cause.as_deref(), Some("idempotency-key:first"), "the entry records its cause");
        for edit in
            ["UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries", "TRUNCATE ledger_entries CASCADE"]
        {
            let refused = sqlx::query(edit).execute(&pool).await;
            assert!(refused.is_err(), "{edit} is refused by the database");
        }
        // Behind the service's back: a balance edit, which no trigger can tell from a deposit.
        sqlx::query("UPDATE accounts SET balance = balance + 1000 WHERE user_id = 'u2'")
            .execute(&pool)
            .await
            .expect("edit");
        let (code, report) = reconcile(&database_url);
        assert_eq!(code, Some(2), "an edited balance is found:\n{report}");
        assert!(report.contains("account u2: balance 1010.5, ledger sum 10.5"), "{report}");
        assert!(!report.contains("account u1"), "{report}");
        pool.close().await;
    });
}

#[test]
fn migrate_skip_refuses_a_schema_behind_the_build() {
    let _one = one_at_a_time();
    payment_core::testing::block_on(async {
        let database_url = payment_postgres::testing::fresh_database().await;
        let pool = sqlx::PgPool::connect(&database_url).await.expect("connect");
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 20261127000001")
            .execute(&pool)
            .await
            .expect("forget the newest migration");
        pool.close().await;
        let output = Command::new(env!("CARGO_BIN_EXE_payment-service"))
            .env_clear()
            .env("DATABASE_URL", &database_url)
            .env("MIGRATE", "skip")
            .env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .output()
            .expect("run payment-service");
        assert!(!output.status.success(), "started on a schema behind its build");
        let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("not current") && text.contains("20261127000001"), "{text}");
    });
}
