//! The real `payment-service` binary as a child process: found (or built) next to this example,
//! started on the benchmark's database and broker, its peak RSS read from `/proc`, stopped with
//! SIGTERM.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Fallible;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The release `payment-service` binary: `BENCH_SERVICE_BIN` if set; else `cargo build --release
/// --bin payment-service` into this example's target directory (a no-op when it is up to date),
/// so the figures are never those of a stale binary.
pub fn binary() -> Fallible<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_SERVICE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating this example's executable: {e}"))?;
    // <target>/<profile>/examples/bench
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| format!("{} is not in <target>/<profile>/examples", exe.display()))?;
    let target = profile_dir.parent().ok_or_else(|| format!("{} has no target directory", profile_dir.display()))?;
    if profile_dir.file_name().is_none_or(|name| name != "release") {
        println!("WARNING: this example is not a release build; its load generators will be slow (use --release)");
    }
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    println!("building the service: cargo build --release --bin payment-service (target {})", target.display());
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "payment-service", "--manifest-path", manifest])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .map_err(|e| format!("running cargo to build payment-service: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --bin payment-service: {status}").into());
    }
    let binary = target.join("release").join("payment-service");
    if !binary.is_file() {
        return Err(format!("{} missing after the build", binary.display()).into());
    }
    Ok(binary)
}

/// The running service.
pub struct Service {
    child: Option<Child>,
    pub base_url: String,
    pub log: PathBuf,
}

impl Service {
    /// Starts `binary` on `database_url` and `brokers` with every other setting at its default
    /// but `extra_env`, and waits until `/readyz` answers 200.
    pub async fn start(
        binary: &PathBuf,
        database_url: &str,
        brokers: &str,
        extra_env: &[(&str, String)],
    ) -> Fallible<Service> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("payment-bench-service-{}-{port}.log", std::process::id()));
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("opening {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BROKERS", brokers)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut service = Service { child: Some(child), base_url: format!("http://127.0.0.1:{port}"), log };
        service.wait_ready().await?;
        Ok(service)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn wait_ready(&mut self) -> Fallible<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))?;
        let started = Instant::now();
        let url = format!("{}/readyz", self.base_url);
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("payment-service exited with {status} at start:\n{}", self.log_tail()).into());
                }
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("payment-service not ready after {READY_TIMEOUT:?}:\n{}", self.log_tail()).into())
    }

    /// An error when the process has exited (it should run until [`stop`](Self::stop)).
    pub fn check_alive(&mut self) -> Fallible<()> {
        let Some(child) = self.child.as_mut() else { return Err("the service is not running".into()) };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(format!("the service exited unexpectedly ({status}); its log ends:\n{}", self.log_tail()).into())
            }
            Err(e) => Err(format!("checking on the service: {e}").into()),
        }
    }

    /// The last lines of the service's log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Peak resident set size so far (`VmHWM` of `/proc/<pid>/status`), in bytes.
    pub fn peak_rss(&self) -> Fallible<u64> {
        let pid = self.pid().ok_or("the service is not running")?;
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .ok_or_else(|| format!("no VmHWM line in {path}"))?;
        Ok(kib * 1024)
    }

    /// SIGTERM, then waits for the exit (graceful: the batch in hand, the outbox flushed).
    /// Returns the exit status and how long the stop took.
    pub fn stop(mut self) -> Fallible<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take().ok_or("the service is not running")?;
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|e| format!("running kill -TERM: {e}"))?;
        if !sent.success() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("kill -TERM failed; the service was killed".into());
        }
        while started.elapsed() < STOP_TIMEOUT {
            match child.try_wait() {
                Ok(Some(status)) => return Ok((status, started.elapsed())),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for the service: {e}").into()),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("the service did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed").into())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
