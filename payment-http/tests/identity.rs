//! `AUTH_MODE=jwt` end to end through the router: keys of every accepted kind (made here, with
//! OpenSSL), every way a token can be wrong, the `X-User-Id` rule, and rotation of the key file
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64_url::encode as b64;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use payment_core::memory::MemoryStore;
use payment_core::testing::block_on;
use payment_core::Payments;
use payment_http::identity::{JwtBearer, JwtSettings};
use payment_http::{router, ApiState, Limits};
use serde_json::{json, Value};
use tower::ServiceExt;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "payments";

mod base64_url {
    /// Unpadded base64url, for JWKS members.
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

/// A signing key of one kind, with its public half as PEM and as a JWK.
struct Signer {
    algorithm: Algorithm,
    private: PKey<Private>,
}

impl Signer {
    fn rsa() -> Self {
        Self { algorithm: Algorithm::RS256, private: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap() }
    }

    fn ec() -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        Self { algorithm: Algorithm::ES256, private: PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap() }
    }

    fn ed25519() -> Self {
        Self { algorithm: Algorithm::EdDSA, private: PKey::generate_ed25519().unwrap() }
    }

    fn public_pem(&self) -> String {
        String::from_utf8(self.private.public_key_to_pem().unwrap()).unwrap()
    }

    fn jwk(&self, kid: &str) -> Value {
        match self.algorithm {
            Algorithm::RS256 => {
                let rsa = self.private.rsa().unwrap();
                json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                       "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
            }
            Algorithm::ES256 => {
                let ec = self.private.ec_key().unwrap();
                let mut ctx = openssl::bn::BigNumContext::new().unwrap();
                let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
                ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).unwrap();
                json!({"kty": "EC", "kid": kid, "crv": "P-256",
                       "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap())})
            }
            _ => {
                let raw = self.private.raw_public_key().unwrap();
                json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(&raw)})
            }
        }
    }

    fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let pem = self.private.private_key_to_pem_pkcs8().unwrap();
        let key = match self.algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims that pass: the right issuer and audience, valid for ten minutes.
fn claims(user: &str) -> Value {
    json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()})
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A directory of its own for a test's key files, removed at the end.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("payment-http-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, file: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(file);
        // Write then rename: a reader never sees half a file, as with a mounted secret.
        let partial = self.0.join(format!("{file}.partial"));
        std::fs::write(&partial, contents).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        path
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(keys: Option<&Path>, secret: Option<&Path>) -> JwtSettings {
    JwtSettings {
        keys_file: keys.map(Path::to_path_buf),
        secret_file: secret.map(Path::to_path_buf),
        reload_interval: Duration::from_millis(50),
        ..JwtSettings::new(ISSUER, AUDIENCE)
    }
}

fn app(verifier: Arc<JwtBearer>) -> Router {
    let mut state = ApiState::new(Payments::new(MemoryStore::new()));
    state.identity = verifier;
    router(state, Limits::default())
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, user: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, challenge, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

fn refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    if code == "missing_token" || code == "invalid_token" {
        let challenge = reply.challenge.as_deref().unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm=\"payments\""), "a Bearer challenge: {challenge:?}");
        if code == "invalid_token" {
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        }
    }
}

#[test]
fn an_rs256_pem_key_admits_its_tokens_and_nothing_else() {
    let dir = KeyDir::new("rs256");
    let signer = Signer::rsa();
    let stranger = Signer::rsa();
    let keys = dir.write("keys.pem", signer.public_pem().as_bytes());
    block_on(async {
        let app = app(JwtBearer::start(settings(Some(&keys), None)).unwrap());
        let token = signer.sign(&claims("alice"), None);
        assert_eq!(call(&app, "POST", "/accounts", Some(&token), None).await.status, StatusCode::CREATED);
        let balance = call(&app, "GET", "/accounts/balance", Some(&token), None).await;
        assert_eq!(balance.body["user_id"], "alice", "the user is the token's `sub`");
        // The header agrees with the token: fine. It names someone else: forbidden, whoever it is.
        assert_eq!(call(&app, "GET", "/accounts/balance", Some(&token), Some("alice")).await.status, StatusCode::OK);
        refused(&call(&app, "GET", "/accounts/balance", Some(&token), Some("bob")).await, 403, "user_mismatch");
        // A forged header with no token, or with a token of another key.
        refused(&call(&app, "GET", "/accounts/balance", None, Some("alice")).await, 401, "missing_token");
        let forged = stranger.sign(&claims("alice"), None);
        refused(&call(&app, "GET", "/accounts/balance", Some(&forged), None).await, 401, "invalid_token");
        let expired = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() - 3600});
        refused(
            &call(&app, "GET", "/accounts/balance", Some(&signer.sign(&expired, None)), None).await,
            401,
            "invalid_token",
        );
        let wrong_aud = json!({"sub": "alice", "iss": ISSUER, "aud": "another-service", "exp": now() + 600});
        refused(
            &call(&app, "GET", "/accounts/balance", Some(&signer.sign(&wrong_aud, None)), None).await,
            401,
            "invalid_token",
        );
        let wrong_iss = json!({"sub": "alice", "iss": "https://evil.test", "aud": AUDIENCE, "exp": now() + 600});
        refused(
            &call(&app, "GET", "/accounts/balance", Some(&signer.sign(&wrong_iss, None)), None).await,
            401,
            "invalid_token",
        );
        let no_exp = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE});
        refused(
            &call(&app, "GET", "/accounts/balance", Some(&signer.sign(&no_exp, None)), None).await,
            401,
            "invalid_token",
        );
        let bad_user = json!({"sub": "alice smith", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
        refused(
            &call(&app, "GET", "/accounts/balance", Some(&signer.sign(&bad_user, None)), None).await,
            401,
            "invalid_token",
        );
        refused(&call(&app, "GET", "/accounts/balance", Some("not.a.token"), None).await, 401, "invalid_token");
        // Algorithm confusion: HS256 keyed with the public key's PEM, and `alg: none`.
        let confused = hs256(signer.public_pem().as_bytes(), &claims("alice"));
        refused(&call(&app, "GET", "/accounts/balance", Some(&confused), None).await, 401, "invalid_token");
        let unsigned =
            format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims("alice").to_string().as_bytes()));
        refused(&call(&app, "GET", "/accounts/balance", Some(&unsigned), None).await, 401, "invalid_token");
        // The operation routes need no token.
        assert_eq!(call(&app, "GET", "/healthz", None, None).await.status, StatusCode::OK);
    });
}

#[test]
fn a_jwks_with_es256_and_eddsa_keys_admits_both_by_kid() {
    let dir = KeyDir::new("jwks");
    let (ec, ed) = (Signer::ec(), Signer::ed25519());
    let jwks = json!({"keys": [ec.jwk("ec-1"), ed.jwk("ed-1"), {"kty": "unknown-kind", "kid": "skipped"}]});
    let keys = dir.write("jwks.json", jwks.to_string().as_bytes());
    block_on(async {
        let app = app(JwtBearer::start(settings(Some(&keys), None)).unwrap());
        let by_ec = ec.sign(&claims("carol"), Some("ec-1"));
        assert_eq!(call(&app, "POST", "/accounts", Some(&by_ec), None).await.status, StatusCode::CREATED);
        let by_ed = ed.sign(&claims("dave"), Some("ed-1"));
        assert_eq!(call(&app, "POST", "/accounts", Some(&by_ed), None).await.status, StatusCode::CREATED);
        // A numeric `sub` is the same user as its text.
        let numeric = json!({"sub": 42, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
        let created = call(&app, "POST", "/accounts", Some(&ed.sign(&numeric, None)), None).await;
        assert_eq!(created.body["user_id"], "42", "{}", created.body);
        // The right key under another key's id does not verify.
        let misfiled = ed.sign(&claims("dave"), Some("ec-1"));
        refused(&call(&app, "GET", "/accounts/balance", Some(&misfiled), None).await, 401, "invalid_token");
    });
}

#[test]
fn hs256_is_read_from_its_secret_file_only() {
    let dir = KeyDir::new("hs256");
    let secret = b"0123456789abcdef0123456789abcdef-a-long-enough-secret";
    let file = dir.write("secret", &[secret.as_slice(), b"\n"].concat());
    block_on(async {
        let app = app(JwtBearer::start(settings(None, Some(&file))).unwrap());
        let token = hs256(secret, &claims("erin"));
        assert_eq!(call(&app, "POST", "/accounts", Some(&token), None).await.status, StatusCode::CREATED);
        let guessed = hs256(b"0123456789abcdef0123456789abcdef-another-secret!!!!", &claims("erin"));
        refused(&call(&app, "GET", "/accounts/balance", Some(&guessed), None).await, 401, "invalid_token");
    });
    // Short secrets, secrets in a JWKS, private keys and empty configurations refuse the start.
    let short = dir.write("short", b"too short");
    assert!(JwtBearer::start(settings(None, Some(&short))).is_err());
    let oct = dir.write("oct.json", json!({"keys": [{"kty": "oct", "k": b64(secret)}]}).to_string().as_bytes());
    assert!(JwtBearer::start(settings(Some(&oct), None)).is_err());
    let private = dir.write("private.pem", &Signer::rsa().private.private_key_to_pem_pkcs8().unwrap());
    assert!(JwtBearer::start(settings(Some(&private), None)).is_err());
    assert!(JwtBearer::start(settings(None, None)).is_err());
}

#[test]
fn a_rewritten_key_file_is_used_without_a_restart() {
    let dir = KeyDir::new("rotation");
    let (old, new) = (Signer::rsa(), Signer::ec());
    let keys = dir.write("keys.pem", old.public_pem().as_bytes());
    block_on(async {
        let app = app(JwtBearer::start(settings(Some(&keys), None)).unwrap());
        let (by_old, by_new) = (old.sign(&claims("frank"), None), new.sign(&claims("frank"), None));
        assert_eq!(call(&app, "POST", "/accounts", Some(&by_old), None).await.status, StatusCode::CREATED);
        refused(&call(&app, "GET", "/accounts/balance", Some(&by_new), None).await, 401, "invalid_token");

        // A file that does not parse keeps the keys in use.
        dir.write("keys.pem", b"-----BEGIN GARBAGE-----\n");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(call(&app, "GET", "/accounts/balance", Some(&by_old), None).await.status, StatusCode::OK);

        dir.write("keys.pem", new.public_pem().as_bytes());
        let deadline = Instant::now() + Duration::from_secs(10);
        while call(&app, "GET", "/accounts/balance", Some(&by_new), None).await.status != StatusCode::OK {
            assert!(Instant::now() < deadline, "the new key was not picked up within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        refused(&call(&app, "GET", "/accounts/balance", Some(&by_old), None).await, 401, "invalid_token");
    });
}

#[test]
fn header_mode_is_the_default_and_ignores_bearer_tokens() {
    block_on(async {
        let app = router(ApiState::new(Payments::new(MemoryStore::new())), Limits::default());
        refused(&call(&app, "GET", "/accounts/balance", Some("anything"), None).await, 401, "missing_user_id");
        assert_eq!(call(&app, "POST", "/accounts", None, Some("gina")).await.status, StatusCode::CREATED);
    });
}
