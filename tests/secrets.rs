//! What the real binary prints, read as an operator (or an attacker with the logs) would: a
//! planted secret appears in no `--help`, no failed start and no log line; logs to a file carry no
//! colour codes, JSON logs are one object a line (librdkafka's own lines included), the embedded
//! default starts without a warning about itself, and a container's `REQUIRE_EXTERNAL` refuses the in-memory fallbacks.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use payment_core::testing::WallClockLimit;

/// The secret every test plants; it must never come back.
const PLANTED: &str = "planted-Secret-4711";

/// Longest a start that must fail, or a `--help`, may take.
const QUICK: Duration = Duration::from_secs(30);

fn service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payment-service"));
    command.env_clear().env("RUST_LOG", "debug").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs `command` to its end within `within`; stdout and stderr together, and whether it
/// succeeded.
fn output(mut command: Command, within: Duration) -> (String, bool) {
    let child = command.spawn().unwrap_or_else(|e| panic!("spawn payment-service: {e}"));
    let (text, status) = finish(child, within, false);
    (text, status)
}

/// Waits for `child` to exit (after SIGTERM when `terminate`), killing it past `within`.
fn finish(mut child: Child, within: Duration, terminate: bool) -> (String, bool) {
    if terminate {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("payment-service did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut text);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    (text, status.success())
}

fn assert_not_leaked(text: &str, what: &str) {
    assert!(!text.contains(PLANTED), "{what} printed the planted secret:\n{text}");
}

#[test]
fn help_prints_no_secret_from_the_environment() {
    let _limit = WallClockLimit::arm(QUICK);
    let mut help = service();
    help.arg("--help")
        .env("DATABASE_URL", format!("postgres://shop:{PLANTED}@db.example/payments"))
        .env("KAFKA_PROPERTIES", format!("security.protocol=SASL_SSL,sasl.password={PLANTED}"));
    let (text, ok) = output(help, QUICK);
    assert!(ok, "--help failed:\n{text}");
    assert!(text.contains("DATABASE_URL_FILE") && text.contains("KAFKA_PROPERTIES_FILE"), "{text}");
    assert_not_leaked(&text, "--help");
}

#[test]
fn a_failed_start_prints_no_secret() {
    let _limit = WallClockLimit::arm(QUICK * 4);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let closed_port = closed_port.unwrap_or_else(|e| panic!("a free port: {e}"));
    // A database nobody listens on.
    let mut start = service();
    start.env("DATABASE_URL", format!("postgres://shop:{PLANTED}@127.0.0.1:{closed_port}/payments?connect_timeout=2"));
    let (text, ok) = output(start, QUICK);
    assert!(!ok, "started without its database:\n{text}");
    assert_not_leaked(&text, "a start with an unreachable database");
    // A property librdkafka refuses, whose name says it holds a secret.
    let mut start = service();
    start.env("KAFKA_PROPERTIES", format!("ssl.key.passwordz={PLANTED}"));
    let (text, ok) = output(start, QUICK);
    assert!(!ok, "started with a property librdkafka refuses:\n{text}");
    assert!(text.contains("ssl.key.passwordz"), "the refused property is named:\n{text}");
    assert_not_leaked(&text, "a start with a refused property");
    // A properties file with a line that is not key=value.
    let file = std::env::temp_dir().join(format!("secrets-e2e-{}.properties", std::process::id()));
    std::fs::write(&file, format!("sasl.password {PLANTED}\n")).unwrap_or_else(|e| panic!("{e}"));
    let mut start = service();
    start.env("KAFKA_PROPERTIES_FILE", &file);
    let (text, ok) = output(start, QUICK);
    let _ = std::fs::remove_file(&file);
    assert!(!ok && text.contains("line 1 of KAFKA_PROPERTIES_FILE"), "{text}");
    assert_not_leaked(&text, "a start with a malformed properties file");
}

#[test]
fn a_running_service_logs_json_without_secrets_colours_or_librdkafka_noise() {
    let _limit = WallClockLimit::arm(QUICK * 4);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let port = port.unwrap_or_else(|e| panic!("a free port: {e}"));
    let file = std::env::temp_dir().join(format!("secrets-run-{}.properties", std::process::id()));
    // Valid properties with secrets in them, one holding commas (hence the file); `sasl.username`
    // alone also draws a warning from librdkafka.
    std::fs::write(&file, format!("sasl.username=shop\nsasl.password={PLANTED},with,commas\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut run = service();
    run.env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("KAFKA_PROPERTIES_FILE", &file)
        .env("KAFKA_PROPERTIES", format!("ssl.key.password={PLANTED}"));
    let child = run.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + QUICK;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen within {QUICK:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Long enough for the consumer to join and librdkafka to say what it says at debug level.
    std::thread::sleep(Duration::from_secs(3));
    let (text, ok) = finish(child, QUICK, true);
    let _ = std::fs::remove_file(&file);
    assert!(ok, "the service did not stop cleanly:\n{text}");
    assert_not_leaked(&text, "a running service's logs");
    assert!(!text.contains('\u{1b}'), "colour codes in logs written to a pipe:\n{text}");
    // librdkafka's own format is `%LEVEL|time|FACILITY|...`: none may bypass the log format, and
    // the embedded default has nothing to warn about.
    assert!(!text.lines().any(|line| line.starts_with('%')), "librdkafka printed on its own:\n{text}");
    assert!(!text.contains("No `bootstrap.servers`"), "the embedded default warned about itself:\n{text}");
    let mut objects = 0;
    for line in text.lines().filter(|line| !line.starts_with("Kafka bootstrap servers: ")) {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(object.get(field).is_some(), "no {field} in {line}");
        }
        objects += 1;
    }
    // `sasl.username` without a SASL mechanism draws a warning from librdkafka at client creation,
    // the moment rdkafka 0.36 let librdkafka print to stderr itself: it comes through as JSON.
    assert!(
        text.lines().any(|line| line.starts_with('{') && line.contains("CONFWARN") && line.contains("sasl.username")),
        "librdkafka's configuration warning did not come through the log format:\n{text}"
    );
    assert!(objects > 5, "too few log lines to mean anything:\n{text}");
}

#[test]
fn require_external_refuses_the_in_memory_fallbacks() {
    let _limit = WallClockLimit::arm(QUICK);
    let mut start = service();
    start.env("REQUIRE_EXTERNAL", "true").env("KAFKA_BROKERS", "127.0.0.1:9");
    let (text, ok) = output(start, QUICK);
    assert!(!ok, "started on the in-memory store:\n{text}");
    assert!(text.contains("REQUIRE_EXTERNAL") && text.contains("DATABASE_URL"), "{text}");
    assert!(!text.contains("KAFKA_BROKERS is not") && !text.contains("DATABASE_URL and KAFKA_BROKERS"), "{text}");
}
