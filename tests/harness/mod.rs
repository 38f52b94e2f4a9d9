//! The real `payment-service` binary, spawned by a test against the broker and the database the
//! test owns: started, killed with SIGKILL, stopped with SIGTERM, restarted on the same port.
//!
//! Each instance logs to a file in the temporary directory, kept when its test fails (and always
//! with `KEEP_SERVICE_LOGS` set); `SERVICE_RUST_LOG` sets the instances' log filter (`info`).

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// One process test at a time: each runs a service, a broker and a database on two cores, and
/// their timings (a 10 s shutdown bound) mean nothing when four such stacks share them.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Kafka-protocol broker (librdkafka's mock cluster, one broker) holding every topic the
/// service uses, each with `partitions` partitions.
pub fn broker(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    for topic in payment_kafka::Topics::default().all() {
        cluster.create_topic(topic, partitions, 1).unwrap_or_else(|e| panic!("topic {topic}: {e}"));
    }
    cluster
}

/// A free local port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One instance of the service: its settings, its port and its log, across restarts.
pub struct Service {
    pub name: String,
    pub base_url: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl Service {
    /// Starts the binary with `env` (its settings) and a port of its own.
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
        // The tests' shared PostgreSQL runs without fsync, for speed, which the service refuses
        // unless told to accept it; a test of durability (tests/process.rs) says so itself.
        if !env.iter().any(|(name, _)| name == "DATABASE_ALLOW_LOST_COMMITS") {
            env.push(("DATABASE_ALLOW_LOST_COMMITS".into(), "true".into()));
        }
        let log = std::env::temp_dir().join(format!("payment-service-{}-{name}-{port}.log", std::process::id()));
        let mut service = Service {
            name: name.into(),
            base_url: format!("http://127.0.0.1:{port}"),
            env,
            log,
            child: None,
            starts: 0,
        };
        service.start();
        service
    }

    /// Starts the process (again), appending to the same log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options().create(true).append(true).open(&self.log).expect("the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_payment-service"))
            .env_clear()
            .env("RUST_LOG", std::env::var("SERVICE_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn payment-service");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no shutdown of any kind, as when a host dies.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit at most `within`; `None` when it did not exit in time
    /// (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<(ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "send SIGTERM to {}", self.name);
        while started.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `GET /readyz`: `Some(true)` ready, `Some(false)` answered not ready, `None` no answer.
    pub async fn readiness(&self, http: &reqwest::Client) -> Option<bool> {
        let answer = http.get(format!("{}/readyz", self.base_url)).timeout(Duration::from_secs(5)).send().await;
        answer.ok().map(|response| response.status().is_success())
    }

    /// Waits until `/readyz` says ready; panics with the log's tail after `within`.
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        while self.readiness(http).await != Some(true) {
            assert!(Instant::now() < deadline, "{} not ready within {within:?}:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Lines of the whole log (every start) containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_lines(needle).len()
    }

    /// The lines of the whole log (every start) containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() && std::env::var_os("KEEP_SERVICE_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("{} log kept at {}", self.name, self.log.display());
        }
    }
}
