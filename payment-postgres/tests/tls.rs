//! PostgreSQL over TLS, the way a managed server that enforces it is reached (issue 17): a
//! throwaway server with `ssl = on` and a `pg_hba.conf` that admits TCP clients only over
//! `hostssl`, presenting a certificate for `localhost` signed by a CA made here. With that CA,
//! `sslmode=verify-full` connects and the store's whole contract suite runs over it; each way a
//! connection must fail (another CA, another host name, no encryption) fails and says why.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use payment_core::testing::{block_on, StoreFactory};
use payment_postgres::testing::server::{ServerTls, TestServer};
use payment_postgres::{PgConfig, PgStore};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

/// The TLS server of this test binary and the CA files its clients may trust.
struct TlsServer {
    server: TestServer,
    port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing the server presents.
    other_ca: PathBuf,
}

fn tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ca = certificate_authority("payment-service test CA");
        let other_ca = certificate_authority("an unrelated CA");
        // `localhost` only: `127.0.0.1` is then a name the certificate does not hold.
        let server = TestServer::dedicated_tls(&certificate_for(&ca, "localhost"))
            .unwrap_or_else(|e| panic!("no TLS PostgreSQL for the tests: {e}"));
        let port = server.port().unwrap_or_else(|| panic!("a dedicated server has a port"));
        // In the server's directory, which is deleted with it when the tests end.
        let dir = server.dir().unwrap_or_else(|| panic!("a dedicated server has a directory"));
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        TlsServer { port, ca: write("ca.pem", ca.pem()), other_ca: write("other-ca.pem", other_ca.pem()), server }
    })
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("CA parameters: {e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names, so the other CA is an unknown issuer rather than a bad signature.
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
    CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("CA certificate: {e}"))
}

fn certificate_for(ca: &CertifiedIssuer<'static, KeyPair>, host: &str) -> ServerTls {
    let mut params = CertificateParams::new(vec![host.to_string()]).unwrap_or_else(|e| panic!("parameters: {e}"));
    params.distinguished_name.push(DnType::CommonName, host);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("server key: {e}"));
    let cert = params.signed_by(&key, ca).unwrap_or_else(|e| panic!("server certificate: {e}"));
    ServerTls { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A URL for database `db` on the TLS server through `host`, with libpq's `query` parameters.
fn url(host: &str, db: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/{db}?{query}", tls_server().port)
}

fn verify_full(db: &str) -> String {
    url("localhost", db, &format!("sslmode=verify-full&sslrootcert={}", tls_server().ca.display()))
}

/// A fresh database cloned from a migrated template on the TLS server; created over
/// `sslmode=require` (the admin URL), the template migrated over `verify-full`.
async fn fresh_database() -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    let server = &tls_server().server;
    let template = TEMPLATE
        .get_or_init(|| async {
            let name = format!("tls_template_{}", uuid::Uuid::new_v4().simple());
            let mut admin = admin(server).await;
            admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap_or_else(|e| panic!("template: {e}"));
            let _ = admin.close().await;
            let store = connect(&verify_full(&name)).await.unwrap_or_else(|e| panic!("connect to the template: {e}"));
            store.migrate().await.unwrap_or_else(|e| panic!("migrate the template: {e}"));
            store.pool().close().await;
            name
        })
        .await;
    let name = format!("tls_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin(server).await;
    admin
        .execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
        .await
        .unwrap_or_else(|e| panic!("create a test database: {e}"));
    let _ = admin.close().await;
    name
}

async fn admin(server: &TestServer) -> PgConnection {
    PgConnection::connect(server.admin_url()).await.unwrap_or_else(|e| panic!("connect to the TLS server: {e}"))
}

/// A refused connection fails at once (nothing about it is transient), so a short acquire
/// timeout only bounds a test that would otherwise wait on a bug.
async fn connect(url: &str) -> Result<PgStore, payment_postgres::PostgresError> {
    PgStore::connect(
        url,
        &PgConfig { max_connections: 8, acquire_timeout: Duration::from_secs(10), ..PgConfig::default() },
    )
    .await
}

/// Whether the store's connection to the server is encrypted, as the server sees it.
async fn encrypted(store: &PgStore) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("read pg_stat_ssl: {e}"))
}

async fn refusal(url: &str) -> String {
    match connect(url).await {
        Ok(_) => panic!("connected, but the connection must be refused"),
        Err(error) => error.to_string(),
    }
}

/// Stores on fresh databases of the TLS server, reached with `sslmode=verify-full`.
struct VerifyFullFactory;

#[async_trait]
impl StoreFactory for VerifyFullFactory {
    type Store = PgStore;

    async fn fresh(&self) -> PgStore {
        let db = fresh_database().await;
        connect(&verify_full(&db)).await.unwrap_or_else(|e| panic!("verify-full to localhost: {e}"))
    }
}

/// The core's whole contract suite, every statement over a verified TLS connection.
mod store_suite_over_verify_full {
    use super::VerifyFullFactory;

    payment_core::store_contract_tests!(VerifyFullFactory);
}

#[test]
fn verify_full_with_the_right_ca_connects_to_localhost_encrypted() {
    block_on(async {
        let store = connect(&verify_full(&fresh_database().await)).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(encrypted(&store).await, "the server sees an encrypted connection");
    });
}

#[test]
fn verify_ca_with_the_right_ca_connects() {
    block_on(async {
        let query = format!("sslmode=verify-ca&sslrootcert={}", tls_server().ca.display());
        let store = connect(&url("localhost", &fresh_database().await, &query)).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(encrypted(&store).await);
    });
}

#[test]
fn verify_ca_refuses_a_certificate_from_another_ca() {
    block_on(async {
        let query = format!("sslmode=verify-ca&sslrootcert={}", tls_server().other_ca.display());
        let error = refusal(&url("127.0.0.1", "postgres", &query)).await;
        assert!(error.to_lowercase().contains("unknown issuer"), "names the cause: {error}");
    });
}

/// libpq's `verify-ca` checks the chain and not the host name, so this connection should succeed.
/// sqlx 0.8.6 under rustls >= 0.23.24 checks the name anyway: its `NoHostnameTlsVerifier` forgives
/// `NotValidForName` but rustls now reports `NotValidForNameContext` (launchbadge/sqlx#3793, fixed
/// by #3861 in sqlx 0.9.0). This test pins that limitation so the upgrade that lifts it fails here:
/// then assert that the connection succeeds and is encrypted instead.
#[test]
fn verify_ca_by_an_address_the_certificate_does_not_hold_is_refused_until_sqlx_0_9() {
    block_on(async {
        let query = format!("sslmode=verify-ca&sslrootcert={}", tls_server().ca.display());
        let error = refusal(&url("127.0.0.1", "postgres", &query)).await;
        assert!(error.contains("not valid for name \"127.0.0.1\""), "the sqlx 0.8 limitation: {error}");
    });
}

#[test]
fn the_default_sslmode_encrypts_when_the_server_offers_tls() {
    block_on(async {
        // No sslmode: libpq's default `prefer` must try TLS first, not stay in plaintext.
        let store = connect(&url("127.0.0.1", &fresh_database().await, "")).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(encrypted(&store).await);
    });
}

#[test]
fn a_certificate_from_another_ca_is_refused_as_an_unknown_issuer() {
    block_on(async {
        let query = format!("sslmode=verify-full&sslrootcert={}", tls_server().other_ca.display());
        let error = refusal(&url("localhost", "postgres", &query)).await;
        assert!(error.to_lowercase().contains("unknown issuer"), "names the cause: {error}");
    });
}

#[test]
fn verify_full_refuses_a_host_name_the_certificate_does_not_hold() {
    block_on(async {
        let query = format!("sslmode=verify-full&sslrootcert={}", tls_server().ca.display());
        let error = refusal(&url("127.0.0.1", "postgres", &query)).await;
        assert!(error.contains("not valid for name \"127.0.0.1\""), "names the cause: {error}");
    });
}

#[test]
fn a_client_that_does_not_encrypt_is_refused_by_the_server() {
    block_on(async {
        let error = refusal(&url("127.0.0.1", "postgres", "sslmode=disable")).await;
        assert!(error.contains("no encryption"), "names the cause: {error}");
    });
}

#[test]
fn a_refusal_does_not_echo_the_url_or_its_password() {
    block_on(async {
        let secret = "s3cret-in-the-url";
        let query = format!("sslmode=verify-full&sslrootcert={}", tls_server().other_ca.display());
        let url = format!("postgres://postgres:{secret}@localhost:{}/postgres?{query}", tls_server().port);
        let error = refusal(&url).await;
        assert!(!error.contains(secret), "the password is not in the error: {error}");
    });
}
