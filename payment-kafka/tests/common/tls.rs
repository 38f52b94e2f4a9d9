//! A Kafka-protocol broker reached only over TLS, for the tests of issue 17.
//!
//! librdkafka's mock cluster speaks plaintext only, so a TLS-terminating proxy (tokio-rustls)
//! stands in front of its one broker, and the broker advertises the proxy's address in its
//! metadata (`rd_kafka_mock_broker_set_host_port`): every client, the service's consumer and
//! publisher included, bootstraps through the proxy and is sent back to it, so none can reach the
//! broker without a TLS handshake that verifies the proxy's certificate. The certificates (a CA,
//! a certificate for `localhost` only, a client certificate, an unrelated CA) are made here with
//! rcgen and written as PEM files, which is how librdkafka takes them (`ssl.ca.location`, ...).

use std::ffi::CString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payment_kafka::KafkaConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rdkafka::client::Client;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::common::{PARTITIONS, WAIT};

/// The mock broker's id (librdkafka numbers them from 1).
const BROKER_ID: i32 = 1;
/// Connections the proxy carries at once; more wait for a free slot.
const PROXY_CONNECTIONS_MAX: usize = 64;

/// Whether the proxy asks clients for a certificate signed by the test CA (mTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Required,
}

/// PEM files of the test's certificates, in a directory removed with it.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed the proxy's and the client's certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The proxy's certificate and key, for rustls.
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    ca_der: CertificateDer<'static>,
}

impl Pki {
    /// A CA, a certificate for `server_name` signed by it, a client certificate and an unrelated CA.
    pub fn new(server_name: &str) -> Self {
        let ca = certificate_authority("payment-service test CA");
        let other_ca = certificate_authority("an unrelated CA");
        let (server_cert, server_key) = leaf(&ca, server_name, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(&ca, "payment-service", ExtendedKeyUsagePurpose::ClientAuth);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("payment-kafka-tls-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", other_ca.pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            server_chain: vec![server_cert.der().clone()],
            server_key: server_key.serialize_der(),
            ca_der: ca.der().clone(),
            dir,
        }
    }

    /// The proxy's TLS settings: its certificate, and the client CA when `auth` requires one.
    fn acceptor(&self, auth: ClientAuth) -> TlsAcceptor {
        // ring explicitly: rustls picks no process-wide provider when a build enables two.
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("TLS versions: {e}"));
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca_der.clone()).unwrap_or_else(|e| panic!("client CA: {e}"));
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap_or_else(|e| panic!("client verifier: {e}"));
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .unwrap_or_else(|e| panic!("proxy certificate: {e}"));
        TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap_or_else(|e| panic!("parameters: {e}"));
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let cert = params.signed_by(&key, ca).unwrap_or_else(|e| panic!("certificate: {e}"));
    (cert, key)
}

/// What the proxy saw: connections it passed on, and handshakes it refused (with rustls' reason).
#[derive(Debug, Default)]
pub struct ProxyLog {
    pub accepted: AtomicU64,
    pub refused: Mutex<Vec<String>>,
}

impl ProxyLog {
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Accepts TLS on `listener` and relays each connection's plaintext to `upstream`.
fn spawn_proxy(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    log: Arc<ProxyLog>,
) -> JoinHandle<()> {
    let slots = Arc::new(Semaphore::new(PROXY_CONNECTIONS_MAX));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let Ok((socket, _)) = listener.accept().await else { continue };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let mut tls = match acceptor.accept(socket).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        if let Ok(mut refused) = log.refused.lock() {
                            refused.push(error.to_string());
                        }
                        return;
                    }
                };
                log.accepted.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut broker) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                }
            });
        }
    })
}

/// Makes the mock cluster owned by `client` advertise its broker at `host:port`: clients are
/// sent there by metadata and by the group coordinator lookup. The broker keeps listening where
/// it did (the address in the cluster's bootstrap list).
///
/// The only `unsafe` of these tests: rdkafka 0.36 exposes no setter, so this calls librdkafka
/// 2.12's `rd_kafka_mock_broker_set_host_port` directly.
fn advertise<C: ClientContext>(client: &Client<C>, host: &str, port: u16) {
    let host = CString::new(host).unwrap_or_else(|e| panic!("host name: {e}"));
    // SAFETY: `native_ptr` is the live handle of `client`, borrowed for the whole call, and the
    // mock cluster it returns is owned by that handle (created by `test.mock.num.brokers`), so it
    // outlives the call; it is checked for null. librdkafka copies `host` under the cluster's lock
    // before returning, so the pointer need not outlive the call either.
    unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.native_ptr());
        assert!(!cluster.is_null(), "the client has no mock cluster");
        rdkafka::bindings::rd_kafka_mock_broker_set_host_port(cluster, BROKER_ID, host.as_ptr(), i32::from(port));
    }
}

/// A one-broker mock cluster that clients reach only through the TLS proxy.
pub struct TlsBroker {
    pub pki: Pki,
    pub proxy: Arc<ProxyLog>,
    /// `localhost:<proxy port>`.
    pub bootstrap: String,
    proxy_task: JoinHandle<()>,
    /// Owns the mock cluster (dropping it destroys the cluster); it never produces.
    _cluster_host: BaseProducer<DefaultProducerContext>,
}

impl TlsBroker {
    /// Starts the cluster and its proxy, whose certificate names `localhost`; with
    /// [`ClientAuth::Required`] the proxy also demands a client certificate from the test CA.
    pub async fn start(auth: ClientAuth) -> Self {
        Self::start_named("localhost", auth).await
    }

    /// As [`start`](Self::start), with the proxy's certificate made for `server_name`.
    pub async fn start_named(server_name: &str, auth: ClientAuth) -> Self {
        if std::env::var("KAFKA_DEBUG").is_ok() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
        }
        let pki = Pki::new(server_name);
        let host: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap_or_else(|e| panic!("mock cluster: {e}"));
        let upstream: SocketAddr = {
            let cluster = host.client().mock_cluster().unwrap_or_else(|| panic!("the client made no mock cluster"));
            for topic in KafkaConfig::new("").topics.all() {
                cluster.create_topic(topic, PARTITIONS, 1).unwrap_or_else(|e| panic!("create {topic}: {e}"));
            }
            cluster.bootstrap_servers().parse().unwrap_or_else(|e| panic!("mock broker address: {e}"))
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("proxy listener: {e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("proxy address: {e}")).port();
        advertise(host.client(), "localhost", port);
        let proxy = Arc::new(ProxyLog::default());
        let proxy_task = spawn_proxy(listener, pki.acceptor(auth), upstream, proxy.clone());
        Self { pki, proxy, bootstrap: format!("localhost:{port}"), proxy_task, _cluster_host: host }
    }

    /// The TLS properties of a client that trusts `ca`: verification of the certificate and of
    /// the host name (librdkafka's default `https` identification, stated here so a change of
    /// default cannot weaken the test).
    pub fn ssl(&self, ca: &std::path::Path) -> Vec<(String, String)> {
        [
            ("security.protocol", "SSL".to_string()),
            ("ssl.ca.location", ca.display().to_string()),
            ("ssl.endpoint.identification.algorithm", "https".to_string()),
            // The proxy listens on 127.0.0.1 only; `localhost` may resolve to ::1 first.
            ("broker.address.family", "v4".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The client certificate the proxy accepts under [`ClientAuth::Required`].
    pub fn client_certificate(&self) -> Vec<(String, String)> {
        vec![
            ("ssl.certificate.location".into(), self.pki.client_cert.display().to_string()),
            ("ssl.key.location".into(), self.pki.client_key.display().to_string()),
        ]
    }

    /// The service's Kafka settings: TLS trusting the test CA, plus `extra`, with the fast group
    /// membership the mock cluster needs.
    pub fn kafka(&self, extra: Vec<(String, String)>) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.bootstrap.clone());
        config.extra = self.ssl(&self.pki.ca);
        config.extra.extend(extra);
        config.extra.push(("heartbeat.interval.ms".into(), "300".into()));
        config.extra.push(("topic.metadata.refresh.interval.ms".into(), "1000".into()));
        if let Ok(debug) = std::env::var("KAFKA_DEBUG") {
            config.extra.push(("debug".into(), debug));
        }
        config
    }

    /// A plain rdkafka client configuration for the test's own producers and readers.
    pub fn client(&self, extra: &[(String, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in self.ssl(&self.pki.ca).iter().chain(extra) {
            config.set(key, value);
        }
        config
    }

    /// Produces `pay.order` records over TLS.
    pub async fn send(&self, extra: &[(String, String)], records: &[(String, String)]) {
        let mut config = self.client(extra);
        // A refused handshake fails the send within the test's wall-clock limit, not 300 s later.
        config.set("message.timeout.ms", "15000");
        let producer: FutureProducer = config.create().unwrap_or_else(|e| panic!("producer: {e}"));
        let topic = KafkaConfig::new("").topics.pay_order;
        for (key, payload) in records {
            let record = FutureRecord::to(&topic).key(key).payload(payload);
            producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
        producer.flush(Duration::from_secs(10)).unwrap_or_else(|e| panic!("flush: {e}"));
    }

    /// Reads `order.paid` over TLS from the start until `count` events arrived or [`WAIT`] passed.
    pub async fn order_paid(&self, extra: &[(String, String)], count: usize) -> Vec<OwnedMessage> {
        let mut config = self.client(extra);
        config.set("group.id", "observer").set("auto.offset.reset", "earliest").set("enable.auto.commit", "false");
        let reader: StreamConsumer = config.create().unwrap_or_else(|e| panic!("observer: {e}"));
        let topic = KafkaConfig::new("").topics.order_paid;
        reader.subscribe(&[&topic]).unwrap_or_else(|e| panic!("subscribe: {e}"));
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        while seen.len() < count {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for order.paid; got {}", seen.len());
            if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(500), reader.recv()).await {
                seen.push(message.detach());
            }
        }
        seen
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        self.proxy_task.abort();
    }
}

/// The same settings as the plaintext mock cluster's.
pub use crate::common::{consumer_config, publisher_config};
