//! A throwaway PostgreSQL server, one per test binary (SPEC §7).
//!
//! With `DATABASE_URL` set, that server is used as is. Otherwise the local server binaries start a
//! fresh cluster in a temporary directory, as the `postgres` system user when we run as root
//! (PostgreSQL refuses root). Rust never drops statics, so the server cannot be stopped from a
//! destructor; instead a small supervisor shell reads its stdin from a pipe whose write end only
//! this process holds. When the process ends — normally, by `exit`, panic or signal — the kernel
//! closes the pipe, `read` returns, and the supervisor stops the server and deletes its files.
//!
//! A [TLS server](TestServer::dedicated_tls) is configured the way a managed PostgreSQL that
//! enforces encryption is: `ssl = on` with the caller's certificate, and a `pg_hba.conf` that
//! admits TCP clients only over `hostssl`, so a client that does not encrypt is refused by the
//! server itself rather than by the test's say-so.

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why no server is available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServerError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin: \
         install PostgreSQL (e.g. `apt install postgresql`) or set DATABASE_URL to a server the tests may create databases on"
    )]
    /// Neither `DATABASE_URL` nor the local server binaries are available.
    NoBinaries,
    /// `initdb` or `postgres` failed; the text says how.
    #[error("the throwaway PostgreSQL server could not start: {0}")]
    Start(String),
}

/// A server the tests may create databases on.
#[derive(Debug)]
pub struct TestServer {
    admin_url: String,
    /// The supervisor: kept until the process exits.
    supervisor: Option<Mutex<Supervisor>>,
}

/// The supervisor shell, the write end of its stdin (commands) and its stdout (acknowledgements).
#[derive(Debug)]
struct Supervisor {
    _child: Child,
    commands: ChildStdin,
    acks: BufReader<ChildStdout>,
    port: u16,
    log: PathBuf,
}

/// How a [dedicated](TestServer::dedicated_with) server is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// `true`: PostgreSQL's durable defaults (`fsync`, `synchronous_commit` and
    /// `full_page_writes` on), so every commit waits for its WAL flush, as in production — for
    /// benchmarks. `false` (the tests' choice): all three off, for speed.
    pub fsync: bool,
}

/// The certificate a [TLS server](TestServer::dedicated_tls) presents, PEM-encoded: the caller
/// makes it (and the CA its clients trust), so tests decide which names it is valid for.
#[derive(Clone)]
pub struct ServerTls {
    /// The server's certificate, optionally followed by its intermediates (`ssl_cert_file`).
    pub cert_pem: String,
    /// The certificate's private key (`ssl_key_file`).
    pub key_pem: String,
}

impl std::fmt::Debug for ServerTls {
    // A key is a secret even in a test: it never reaches a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

static SHARED: OnceLock<Result<TestServer, ServerError>> = OnceLock::new();

/// How long a starting server may take before the tests give up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl TestServer {
    /// The server of this test binary, started on first use.
    pub fn shared() -> Result<&'static TestServer, ServerError> {
        SHARED
            .get_or_init(|| match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => Ok(TestServer { admin_url: url, supervisor: None }),
                _ => start(&search_dirs(), ServerOptions::default(), None),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A server of its own, always a throwaway one (never `DATABASE_URL`'s), which the caller may
    /// [stop](Self::stop_immediately) and [start again](Self::start_again): for tests of a
    /// database outage. It is stopped and deleted when the process exits. It is durable (`fsync`
    /// and `synchronous_commit` on): an immediate stop of a server that is not loses commits it
    /// acknowledged, which no service can survive (issue 18 (7)), so an outage test on one
    /// would test the server's settings, not the service.
    pub fn dedicated() -> Result<TestServer, ServerError> {
        Self::dedicated_with(ServerOptions { fsync: true })
    }

    /// A [dedicated](Self::dedicated) server started with `options`, e.g. with `fsync` on for a
    /// benchmark.
    pub fn dedicated_with(options: ServerOptions) -> Result<TestServer, ServerError> {
        start(&search_dirs(), options, None)
    }

    /// A [dedicated](Self::dedicated) server that presents `tls` and accepts TCP clients only
    /// over TLS (`hostssl`; `hostnossl` is rejected), listening on 127.0.0.1. Its
    /// [admin URL](Self::admin_url) asks for `sslmode=require`; a test that verifies the
    /// certificate builds its own URL from [`port`](Self::port).
    pub fn dedicated_tls(tls: &ServerTls) -> Result<TestServer, ServerError> {
        start(&search_dirs(), ServerOptions::default(), Some(tls))
    }

    /// The port a throwaway server listens on (`None` for `DATABASE_URL`'s server).
    pub fn port(&self) -> Option<u16> {
        let supervisor = self.supervisor.as_ref()?.lock().ok()?;
        Some(supervisor.port)
    }

    /// The directory of a throwaway server, deleted with it when the process exits: a place for
    /// files its clients need, such as the CA a TLS client trusts (`sslrootcert`).
    pub fn dir(&self) -> Option<PathBuf> {
        let supervisor = self.supervisor.as_ref()?.lock().ok()?;
        supervisor.log.parent().map(Path::to_path_buf)
    }

    /// Stops the server the way `pg_ctl stop -m immediate` does (SIGQUIT to the postmaster: no
    /// checkpoint, every connection cut), and returns once it has exited.
    pub fn stop_immediately(&self) -> Result<(), ServerError> {
        self.control("stop").map(|_| ())
    }

    /// Starts the stopped server again on the same port and data (it runs crash recovery), and
    /// returns once it accepts connections.
    pub fn start_again(&self) -> Result<(), ServerError> {
        let (port, log) = self.control("start")?;
        wait_until_ready(port, &log)
    }

    fn control(&self, command: &str) -> Result<(u16, PathBuf), ServerError> {
        let supervisor = self.supervisor.as_ref().ok_or_else(|| ServerError::Start("not a throwaway server".into()))?;
        let mut supervisor = supervisor.lock().map_err(|_| ServerError::Start("supervisor lock poisoned".into()))?;
        let fail = |e: std::io::Error| ServerError::Start(format!("supervisor: {e}"));
        writeln!(supervisor.commands, "{command}").map_err(fail)?;
        supervisor.commands.flush().map_err(fail)?;
        let mut ack = String::new();
        supervisor.acks.read_line(&mut ack).map_err(fail)?;
        if ack.trim() != "done" {
            return Err(ServerError::Start(format!("supervisor answered {ack:?} to {command}")));
        }
        Ok((supervisor.port, supervisor.log.clone()))
    }

    /// A URL for administration (creating databases).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// A URL for database `db` on this server.
    pub fn database_url(&self, db: &str) -> String {
        let (base, query) = match self.admin_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.admin_url.as_str(), None),
        };
        // After the authority (`scheme://authority/`), the path is the database name.
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let root = match base[authority_end..].find('/') {
            Some(slash) => &base[..authority_end + slash],
            None => base,
        };
        match query {
            Some(query) => format!("{root}/{db}?{query}"),
            None => format!("{root}/{db}"),
        }
    }
}

/// A PostgreSQL program (`pgbench`, `psql`, ...) where the server binaries are looked for: on
/// `PATH`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    search_dirs().into_iter().map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// Directories that may hold the server binaries, in order of preference.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().split('.').next()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    dirs
}

/// The first directory holding both `initdb` and `postgres`.
fn find_binaries(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file()).cloned()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|line| line.starts_with("Uid:"))?.to_string();
            uids.split_whitespace().nth(2).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}

fn start(dirs: &[PathBuf], options: ServerOptions, tls: Option<&ServerTls>) -> Result<TestServer, ServerError> {
    let bin = find_binaries(dirs).ok_or(ServerError::NoBinaries)?;
    let fail = |what: &str, error: &dyn std::fmt::Display| ServerError::Start(format!("{what}: {error}"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let root = std::env::temp_dir().join(format!("payment-pg-{}-{nanos}", std::process::id()));
    let data = root.join("data");
    let log = root.join("server.log");
    std::fs::create_dir_all(&data).map_err(|e| fail("create the data directory", &e))?;
    // Written before the ownership is handed over below, so the key is the server user's.
    let tls_settings = match tls {
        Some(tls) => write_tls_files(&root, tls)?,
        None => Vec::new(),
    };
    let as_root = running_as_root();
    if as_root {
        let status = Command::new("chown").args(["-R", "postgres:"]).arg(&root).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(ServerError::Start(format!("cannot hand {} to the postgres user", root.display())));
        }
    }
    // As root, every server command runs as the `postgres` system user.
    let command = |program: &Path| {
        if as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    };
    let init = command(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
        .output()
        .map_err(|e| fail("run initdb", &e))?;
    if !init.status.success() {
        return Err(ServerError::Start(format!("initdb failed: {}", String::from_utf8_lossy(&init.stderr))));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| fail("find a free port", &e))?
        .port();
    let mut server = command(&bin.join("postgres"));
    server.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(&root);
    let mut settings = vec!["listen_addresses=127.0.0.1", "max_connections=400"];
    if !options.fsync {
        settings.extend(["fsync=off", "synchronous_commit=off", "full_page_writes=off"]);
    }
    for setting in settings {
        server.arg("-c").arg(setting);
    }
    for setting in &tls_settings {
        server.arg("-c").arg(setting);
    }
    let program = server.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = server.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    // The supervisor: start the server; obey `stop` (immediate) and `start` lines, answering
    // `done`; when our end of the pipe closes, stop the server and clean up. The server is waited
    // for through its launcher's pid, as a postmaster pid may linger as a zombie.
    let script = r#"
        "$@" </dev/null >"$LOG" 2>&1 &
        server=$!
        while read -r command; do
            case "$command" in
                stop)
                    pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null)
                    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
                    wait "$server" ;;
                start)
                    "$@" </dev/null >"$LOG" 2>&1 &
                    server=$! ;;
            esac
            echo done
        done
        pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null)
        [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
        wait "$server"
        rm -rf "$ROOT"
    "#;
    let mut supervisor = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("supervisor")
        .arg(&program)
        .args(&args)
        .env("LOG", &log)
        .env("DATA", &data)
        .env("ROOT", &root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C aimed at `cargo test` must not kill it before it cleans up.
        .process_group(0)
        .spawn()
        .map_err(|e| fail("start the supervisor", &e))?;
    let (Some(commands), Some(acks)) = (supervisor.stdin.take(), supervisor.stdout.take()) else {
        return Err(ServerError::Start("the supervisor has no stdin or stdout".into()));
    };
    wait_until_ready(port, &log)?;
    tracing::info!(port, dir = %root.display(), "throwaway PostgreSQL server started");
    let acks = BufReader::new(acks);
    let admin_query = if tls.is_some() { "?sslmode=require" } else { "" };
    Ok(TestServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres{admin_query}"),
        supervisor: Some(Mutex::new(Supervisor { _child: supervisor, commands, acks, port, log })),
    })
}

/// Writes the certificate, the key (mode 0600: PostgreSQL refuses a key others can read) and a
/// `pg_hba.conf` admitting TCP clients only over TLS into `root`, and returns the server settings
/// that use them.
fn write_tls_files(root: &Path, tls: &ServerTls) -> Result<Vec<String>, ServerError> {
    let fail = |what: &str, error: std::io::Error| ServerError::Start(format!("{what}: {error}"));
    let cert = root.join("server.crt");
    let key = root.join("server.key");
    let hba = root.join("pg_hba.conf");
    std::fs::write(&cert, &tls.cert_pem).map_err(|e| fail("write the server certificate", e))?;
    // Created 0600, never readable by others even for a moment.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .and_then(|mut file| file.write_all(tls.key_pem.as_bytes()))
        .map_err(|e| fail("write the server key", e))?;
    // First match wins: the socket in `root` (trusted, as initdb's default) and TLS over TCP; any
    // other TCP connection is refused with "no encryption".
    let rules = "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostssl all all ::1/128 trust\n\
                 hostnossl all all all reject\n";
    std::fs::write(&hba, rules).map_err(|e| fail("write pg_hba.conf", e))?;
    Ok(vec![
        "ssl=on".to_string(),
        format!("ssl_cert_file={}", cert.display()),
        format!("ssl_key_file={}", key.display()),
        format!("hba_file={}", hba.display()),
    ])
}

fn wait_until_ready(port: u16, log: &Path) -> Result<(), ServerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        let logged_ready = std::fs::File::open(log)
            .map(|file| {
                BufReader::new(file).lines().map_while(Result::ok).any(|l| l.contains("ready to accept connections"))
            })
            .unwrap_or(false);
        if logged_ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    Err(ServerError::Start(format!("not ready after {START_TIMEOUT:?}; server log:\n{tail}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_reported_in_one_sentence() {
        let error =
            start(&[PathBuf::from("/nonexistent")], ServerOptions::default(), None).expect_err("no binaries there");
        assert!(matches!(error, ServerError::NoBinaries));
        assert!(error.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn database_urls_swap_the_path() {
        let server = TestServer { admin_url: "postgres://u:p@h:5/postgres?sslmode=disable".into(), supervisor: None };
        assert_eq!(server.database_url("x"), "postgres://u:p@h:5/x?sslmode=disable");
        let server = TestServer { admin_url: "postgres://h".into(), supervisor: None };
        assert_eq!(server.database_url("x"), "postgres://h/x");
    }

    #[test]
    fn a_dedicated_server_stops_immediately_and_starts_again_with_its_data() {
        let server = TestServer::dedicated().unwrap();
        let port: u16 = server.admin_url().rsplit(':').next().and_then(|p| p.split('/').next()?.parse().ok()).unwrap();
        server.stop_immediately().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
        server.start_again().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "started again");
    }
}
