//! What an operator is handed, checked against the real binary: the Grafana dashboard and the
//! Prometheus alert rules in `deploy/` name only metrics the service exports (scraped from
//! `/metrics` after traffic), the rules pass `promtool check rules` and each links to its entry in
//! `docs/runbook.md`, the dashboard parses and every panel queries something; and the operator's
//! commands (`dead-letters list|resend`, `account show`, `consumer lag`) answer from a running
//! service's PostgreSQL and Kafka, and refuse in one sentence what they cannot do.

#[allow(dead_code)]
mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{one_at_a_time, Service};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long the service may take to apply, publish and report what a test produced (the consumer
/// lag gauge comes from librdkafka's statistics, every 5 s).
const SETTLED_WITHIN: Duration = Duration::from_secs(60);
const DASHBOARD: &str = "deploy/grafana/payment-service.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const RUNBOOK: &str = "docs/runbook.md";

/// Metrics the service exports only after an event a test of this file does not produce. They are
/// checked against the constants the code records them with instead (a renamed constant breaks
/// this list at compile time, and a misspelt name in `deploy/` is still caught):
/// - a partition stuck on an unreadable record: `payment-kafka/tests/unreadable.rs` produces one
///   (a hand-made corrupt zstd batch) and reads these gauges;
/// - a batch that fails to commit: needs a database failing under the consumer
///   (`tests/process.rs` stops PostgreSQL);
/// - a publishing round stopped by a broker error.
const EXPORTED_AFTER_AN_EVENT: [&str; 5] = [
    payment_kafka::telemetry::PARTITION_STUCK,
    payment_kafka::telemetry::PARTITION_STUCK_OFFSET,
    payment_kafka::telemetry::UNREADABLE_RECORD_ERRORS,
    payment_kafka::telemetry::BATCH_FAILURES,
    payment_kafka::telemetry::OUTBOX_PUBLISH_FAILURES,
];

/// Series Prometheus makes itself, not the service: `up` for every scrape, `probe_success` from
/// the blackbox exporter probing `/readyz`.
const MADE_BY_PROMETHEUS: [&str; 2] = ["up", "probe_success"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every PromQL expression of the dashboard's panels, with the panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard = dashboard();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((format!("panel {title:?}"), expr.to_string()));
            }
        }
    }
    // A template variable's `label_values(metric, label)` names a metric too.
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(metric) = variable["query"].as_str().and_then(|q| q.strip_prefix("label_values(")) {
            let metric = metric.split(',').next().unwrap_or_default().trim();
            queries.push((format!("variable {:?}", variable["name"]), metric.to_string()));
        }
    }
    queries
}

/// Every alert rule of the rules file.
fn alert_rules() -> Vec<serde_norway::Value> {
    let rules: serde_norway::Value =
        serde_norway::from_str(&read(ALERTS)).unwrap_or_else(|e| panic!("{ALERTS} is not YAML: {e}"));
    let groups = rules["groups"].as_sequence().cloned().unwrap_or_default();
    groups.iter().flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default()).collect()
}

fn rule_queries() -> Vec<(String, String)> {
    alert_rules()
        .iter()
        .map(|rule| {
            let name = rule["alert"].as_str().unwrap_or("?");
            (format!("alert {name}"), rule["expr"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// The series names a PromQL expression reads. Not a parser (promtool checks the syntax): string
/// literals, label matchers `{…}`, ranges `[…]` and Grafana variables `$x` are dropped; an
/// identifier followed by `(` is a function; `by (…)`, `without (…)`, `on (…)`, `ignoring (…)`,
/// `group_left (…)` and `group_right (…)` list labels; what is left, keywords and aggregation
/// operators aside, is a series name.
fn series_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const WORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "atan2",
    ];
    let mut kept = String::new();
    let mut closing: Option<char> = None;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match (closing, c) {
            (Some(end), c) if c == end => closing = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => closing = Some(c),
            (None, '{') => closing = Some('}'),
            (None, '[') => closing = Some(']'),
            (None, '$') => {
                while chars.peek().is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                    chars.next();
                }
            }
            (None, c) => kept.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let mut rest = kept.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':') {
        let before = &rest[..start];
        let after = &rest[start..];
        let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(after.len());
        let word = &after[..len];
        rest = &after[len..];
        // Part of a number (`1e3`, `0x1f`) or a duration (`5m`): not a name.
        if before.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
            continue;
        }
        let next = rest.trim_start();
        if LABEL_LISTS.contains(&word.to_ascii_lowercase().as_str()) {
            // `by (a, b)`; `on` and `ignoring` may also stand without a list after `group_left`.
            if next.starts_with('(') {
                rest = &next[next.find(')').unwrap_or(next.len())..];
            }
            continue;
        }
        if next.starts_with('(') || WORDS.contains(&word.to_ascii_lowercase().as_str()) {
            continue;
        }
        names.insert(word.to_string());
    }
    names
}

/// The series names in a Prometheus text exposition (`name{labels} value` or `name value`).
fn exported_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(|c: char| c == '{' || c.is_whitespace()).next())
        .map(str::to_string)
        .collect()
}

/// The names `queries` read that are neither exported, nor known to need an event, nor made by
/// Prometheus, each with where it is named.
fn unknown_names(queries: &[(String, String)], exported: &BTreeSet<String>) -> Vec<String> {
    let mut unknown = Vec::new();
    for (place, expr) in queries {
        for name in series_names(expr) {
            let known = exported.contains(&name)
                || EXPORTED_AFTER_AN_EVENT.contains(&name.as_str())
                || MADE_BY_PROMETHEUS.contains(&name.as_str());
            if !known {
                unknown.push(format!("{name} (in {place})"));
            }
        }
    }
    unknown
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap_or_else(|e| panic!("producer: {e}"))
}

async fn produce(producer: &FutureProducer, key: Option<&str>, payload: &str) {
    produce_to(producer, "pay.order", key, payload).await
}

async fn produce_to(producer: &FutureProducer, topic: &str, key: Option<&str>, payload: &str) {
    let mut record = FutureRecord::<str, str>::to(topic).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
}

fn mock_cluster() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    let cluster = harness::broker(4);
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

async fn http_ok(request: reqwest::RequestBuilder, what: &str) {
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(response.status().is_success(), "{what}: {}", response.status());
}

async fn open_and_fund(http: &reqwest::Client, base: &str, user: &str, amount: &str) {
    let open = http.post(format!("{base}/accounts")).header("x-user-id", user);
    http_ok(open, "open an account").await;
    let deposit = http
        .post(format!("{base}/accounts/deposit"))
        .header("x-user-id", user)
        .json(&serde_json::json!({ "amount": amount }));
    http_ok(deposit, "deposit").await;
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_name_is_exported_after_traffic() {
    let _one = one_at_a_time();
    payment_core::testing::block_on(async {
        // The embedded default, as `cargo run` starts it: the in-memory store and the embedded
        // broker, whose address the binary prints on stdout (into its log here) before it listens.
        let service = Service::spawn("ops-metrics", &[("OUTBOX_POLL_MS", "200")]);
        let http = reqwest::Client::new();
        service.wait_ready(&http, READY_WITHIN).await;
        let tail = service.log_tail();
        let brokers = tail.lines().find_map(|line| line.strip_prefix("Kafka bootstrap servers: "));
        let brokers =
            brokers.unwrap_or_else(|| panic!("the embedded broker's address is not in the log:\n{tail}")).to_string();
        let base = &service.base_url;
        open_and_fund(&http, base, "ops-1", "100").await;
        http_ok(http.get(format!("{base}/accounts/balance")).header("x-user-id", "ops-1"), "balance").await;
        let missing = http.get(format!("{base}/accounts/balance")).header("x-user-id", "nobody").send().await;
        assert_eq!(missing.map(|r| r.status().as_u16()).ok(), Some(404), "an unknown user's balance");

        let producer = producer(&brokers);
        produce(
            &producer,
            Some("ops-o1"),
            r#"{"message_id":"ops-m1","order_id":"ops-o1","user_id":"ops-1","amount":"10"}"#,
        )
        .await;
        produce(
            &producer,
            Some("ops-o2"),
            r#"{"message_id":"ops-m2","order_id":"ops-o2","user_id":"ops-1","amount":"1000"}"#,
        )
        .await;
        produce(&producer, None, "this is not JSON").await;
        // Refunds: part of the paid order back, and a refund of the order that was never paid.
        // `refund.order` is another topic, so the refund is sent once the payment is applied.
        let deadline = Instant::now() + SETTLED_WITHIN;
        loop {
            let text = match http.get(format!("{base}/metrics")).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(r#"payment_commands_total{outcome="paid"} 1"#) {
                break;
            }
            assert!(Instant::now() < deadline, "the payment was not applied:\n{}", service.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        produce_to(
            &producer,
            "refund.order",
            Some("ops-o1"),
            r#"{"message_id":"ops-r1","refund_id":"ops-rf1","order_id":"ops-o1","user_id":"ops-1","amount":"4"}"#,
        )
        .await;
        produce_to(
            &producer,
            "refund.order",
            Some("ops-o2"),
            r#"{"message_id":"ops-r2","refund_id":"ops-rf2","order_id":"ops-o2","user_id":"ops-1"}"#,
        )
        .await;

        // The outcomes, as the service counts them: one paid, one failed, one dead-lettered, one
        // refund credited and one refused as not paid, all five events acknowledged by the
        // broker, and the lag reported.
        let settled = [
            r#"payment_commands_total{outcome="paid"} 1"#,
            r#"payment_commands_total{outcome="failed"} 1"#,
            r#"payment_commands_total{outcome="dead_lettered"} 1"#,
            r#"payment_dead_letters_total{reason="malformed_json"} 1"#,
            "payment_refunds_total 1",
            r#"payment_refund_failures_total{reason="order_not_paid"} 1"#,
            "payment_outbox_published_total 5",
            "payment_consumer_lag_messages{",
        ];
        let deadline = Instant::now() + SETTLED_WITHIN;
        let text = loop {
            let text = match http.get(format!("{base}/metrics")).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let waiting: Vec<&&str> = settled.iter().filter(|line| !text.contains(**line)).collect();
            if waiting.is_empty() {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "still waiting for {waiting:?} in /metrics:\n{text}\n{}",
                service.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };

        let exported = exported_series(&text);
        let mut queries = dashboard_queries();
        queries.extend(rule_queries());
        assert!(queries.len() > 20, "the dashboard and the rules hold queries: {queries:?}");
        let unknown = unknown_names(&queries, &exported);
        assert!(unknown.is_empty(), "named in deploy/ but not in /metrics: {unknown:?}\nexported: {exported:?}");
        for histogram in ["http_request_duration_seconds", "payment_consumer_batch_messages"] {
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(exported.contains(&format!("{histogram}{suffix}")), "{histogram} is a histogram: {suffix}");
            }
        }
    });
}

#[test]
fn the_expression_scanner_finds_series_names_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{job=~"$job", status=~"5.."}[$__rate_interval]))) > 1e3
        and on (instance) max without (partition) (payment_consumer_lag_messages offset 5m) unless up == 0"#;
    let names: Vec<String> = series_names(expr).into_iter().collect();
    assert_eq!(names, ["http_request_duration_seconds_bucket", "payment_consumer_lag_messages", "up"]);
    let exported = exported_series("# HELP x\nup 1\nhttp_requests_total{route=\"/a\"} 3\n");
    assert_eq!(exported.into_iter().collect::<Vec<_>>(), ["http_requests_total", "up"]);
}

#[test]
fn the_alert_rules_and_the_example_configuration_pass_promtool() {
    let _limit = payment_core::testing::WallClockLimit::arm(Duration::from_secs(60));
    let checked = Command::new("promtool").args(["check", "rules"]).arg(repo(ALERTS)).output();
    let checked = match checked {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed: install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does")
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success(), "promtool check rules {ALERTS}:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    // The example configuration, which loads the same rules.
    let config = Command::new("promtool").args(["check", "config"]).arg(repo(PROMETHEUS_CONFIG)).output();
    let config = config.unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&config.stdout), String::from_utf8_lossy(&config.stderr));
    assert!(config.status.success(), "promtool check config {PROMETHEUS_CONFIG}:\n{said}");
}

#[test]
fn every_alert_rule_links_to_its_runbook_entry() {
    let runbook = read(RUNBOOK);
    // GitHub's anchors: the heading in lower case, spaces as `-`, other punctuation dropped.
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("### ").or_else(|| line.strip_prefix("## ")))
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let rules = alert_rules();
    assert!(rules.len() >= 6, "alert rules: {}", rules.len());
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap_or_else(|| panic!("a rule without a name: {rule:?}"));
        assert!(rule["labels"]["severity"].as_str().is_some(), "{name} has no severity");
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let anchor = url.strip_prefix("https://github.com/payment-service/payment-service/blob/main/docs/runbook.md#");
        let anchor = anchor.unwrap_or_else(|| panic!("{name}: runbook_url is not an entry of docs/runbook.md: {url}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: the anchor is the alert's name");
        assert!(anchors.contains(anchor), "{name}: docs/runbook.md has no heading for #{anchor}");
    }
}

#[test]
fn the_dashboard_parses_and_every_panel_has_a_query() {
    let dashboard = dashboard();
    let panels = dashboard["panels"].as_array().unwrap_or_else(|| panic!("{DASHBOARD} has no panels"));
    let mut ids = BTreeSet::new();
    let mut charts = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_else(|| panic!("a panel without a title: {panel}"));
        assert!(ids.insert(panel["id"].as_u64()), "panel id {} twice", panel["id"]);
        if panel["type"] == "row" {
            continue;
        }
        charts += 1;
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?} has a target without a query");
            assert!(!series_names(expr).is_empty(), "panel {title:?} queries no series: {expr}");
        }
        assert!(panel["datasource"]["uid"].is_string(), "panel {title:?} has no data source");
    }
    assert!(charts >= 12, "panels with queries: {charts}");
    let stuck = payment_kafka::telemetry::PARTITION_STUCK;
    let queries = dashboard_queries();
    assert!(queries.iter().any(|(_, expr)| series_names(expr).contains(stuck)), "the dashboard shows {stuck}");
}

/// The binary, run as an operator runs a command: `env` only, stdout and stderr apart.
fn operator(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_payment-service"))
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn payment-service: {e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("payment-service {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stdout, stderr)
}

fn succeed(env: &[(&str, &str)], args: &[&str]) -> String {
    let (ok, stdout, stderr) = operator(env, args);
    assert!(ok, "payment-service {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn refused(env: &[(&str, &str)], args: &[&str], sentence: &str) {
    let (ok, stdout, stderr) = operator(env, args);
    assert!(!ok, "payment-service {args:?} should fail:\n{stdout}");
    assert!(stderr.contains(sentence), "payment-service {args:?} should say {sentence:?}:\n{stderr}");
}

/// The tab-separated rows of a command's table whose first column is `first`.
fn rows_starting<'a>(text: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    text.lines().map(|l| l.split('\t').collect::<Vec<_>>()).filter(|cols| cols[0] == first).collect()
}

/// The record at `partition`/`offset` of `topic`: its payload and its `message-id` header.
fn record_at(brokers: &str, topic: &str, partition: i32, offset: i64) -> (Vec<u8>, Option<String>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ops-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("reader: {e}"));
    let mut assignment = TopicPartitionList::new();
    let added = assignment.add_partition_offset(topic, partition, Offset::Offset(offset));
    added.unwrap_or_else(|e| panic!("assign: {e}"));
    consumer.assign(&assignment).unwrap_or_else(|e| panic!("assign: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let header = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == "message-id")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            return (message.payload().unwrap_or_default().to_vec(), header);
        }
    }
    panic!("no record at {topic}/{partition}/{offset}");
}

#[test]
fn operator_commands_answer_from_a_running_service() {
    let _one = one_at_a_time();
    payment_core::testing::block_on(async {
        let (_cluster, brokers) = mock_cluster();
        let database = payment_postgres::testing::fresh_database().await;
        let env = [("DATABASE_URL", database.as_str()), ("KAFKA_BROKERS", brokers.as_str())];
        let mut service_env = env.to_vec();
        service_env.extend([("KAFKA_FETCH_WAIT_MAX_MS", "10"), ("OUTBOX_POLL_MS", "200")]);
        let service = Service::spawn("ops-commands", &service_env);
        let http = reqwest::Client::new();
        service.wait_ready(&http, READY_WITHIN).await;
        open_and_fund(&http, &service.base_url, "ops-user", "100").await;

        let producer = producer(&brokers);
        produce(
            &producer,
            Some("A-1"),
            r#"{"message_id":"ops-1","order_id":"A-1","user_id":"ops-user","amount":"25.50"}"#,
        )
        .await;
        produce(&producer, None, "not json at all").await;
        produce(&producer, Some("ops-user"), r#"{"message_id":"ops-3","user_id":"ops-user","amount":"1"}"#).await;

        // consumer lag: the group catches up on the three messages.
        let deadline = Instant::now() + SETTLED_WITHIN;
        let lag = loop {
            let both = succeed(&env, &["consumer", "lag"]);
            // `pay.order`'s section; `refund.order`'s follows it (nothing was sent there).
            let lag = both.split("\ngroup ").next().unwrap_or_default().to_string();
            assert!(both.contains("on refund.order: lag 0 message(s)"), "{both}");
            if lag.contains("on pay.order: lag 0 message(s) over 4 partition(s)") {
                break lag;
            }
            assert!(Instant::now() < deadline, "the group did not catch up:\n{lag}\n{}", service.log_tail());
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let partitions: Vec<Vec<&str>> =
            lag.lines().skip(2).map(|l| l.split('\t').collect()).filter(|cols: &Vec<&str>| cols.len() == 4).collect();
        assert_eq!(partitions.len(), 4, "{lag}");
        let ends: i64 = partitions.iter().map(|cols| cols[2].parse::<i64>().unwrap_or(-1)).sum();
        assert_eq!(ends, 3, "three messages in all:\n{lag}");
        for cols in &partitions {
            let expected_committed = if cols[2] == "0" { "-" } else { cols[2] };
            assert_eq!(cols[1], expected_committed, "committed up to the end:\n{lag}");
        }

        // account show: balance, the ledger's two entries, the payment.
        let shown = succeed(&env, &["account", "show", "--user", "ops-user"]);
        assert!(shown.starts_with("user ops-user: balance 74.5"), "{shown}");
        let payment_entries: Vec<_> = shown.lines().filter(|l| l.contains("\tpayment\t")).collect();
        assert_eq!(payment_entries.len(), 1, "{shown}");
        assert!(payment_entries[0].contains("\t25.5") && payment_entries[0].contains("\tA-1\t"), "{shown}");
        assert_eq!(shown.lines().filter(|l| l.contains("\tdeposit\t")).count(), 1, "{shown}");
        assert_eq!(rows_starting(&shown, "A-1").len(), 1, "the payment of A-1:\n{shown}");

        // dead-letters list: the two messages without a usable order id, with reason and source.
        let listed = succeed(&env, &["dead-letters", "list", "--limit", "10"]);
        assert!(listed.starts_with("2 dead letter(s)"), "{listed}");
        let rows: Vec<Vec<&str>> = listed.lines().skip(2).map(|l| l.split('\t').collect()).collect();
        let malformed = rows.iter().find(|cols| cols[2] == "malformed_json").unwrap_or_else(|| panic!("{listed}"));
        let missing = rows.iter().find(|cols| cols[2] == "missing_field").unwrap_or_else(|| panic!("{listed}"));
        assert!(malformed[3].starts_with("pay.order/"), "source topic/partition/offset: {listed}");
        assert!(
            malformed[4].starts_with(&format!("{}@", malformed[3])),
            "no message_id: the identity is the position, create time and hash: {listed}"
        );
        assert_eq!(missing[4], "ops-3", "{listed}");
        let malformed_id = malformed[0].to_string();
        let missing_id = missing[0].to_string();

        // dead-letters resend: the original bytes go back to pay.order under a new identity, and
        // the consumer applies them as a new command (here: dead-lettered again, same cause).
        let resent = succeed(&env, &["dead-letters", "resend", "--id", &malformed_id]);
        let identity = format!("dead-letter-resend/{malformed_id}");
        assert!(resent.contains(&format!("as identity {identity}")), "{resent}");
        let position = resent.split("(partition ").nth(1).unwrap_or_else(|| panic!("{resent}"));
        let mut numbers = position.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
        let partition: i32 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{resent}"));
        let offset: i64 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{resent}"));
        let (payload, header) = record_at(&brokers, "pay.order", partition, offset);
        assert_eq!(payload, b"not json at all", "the original bytes");
        assert_eq!(header.as_deref(), Some(identity.as_str()));
        let deadline = Instant::now() + SETTLED_WITHIN;
        loop {
            let listed = succeed(&env, &["dead-letters", "list"]);
            let again =
                listed.lines().skip(2).map(|l| l.split('\t').collect::<Vec<_>>()).find(|cols| cols[4] == identity);
            if let Some(again) = again {
                assert_eq!(again[2], "malformed_json", "{listed}");
                assert!(listed.starts_with("3 dead letter(s)"), "{listed}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the re-sent command was not applied:\n{listed}\n{}",
                service.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        refused(&env, &["dead-letters", "resend", "--id", &malformed_id], "it was re-sent before");
        refused(&env, &["dead-letters", "resend", "--id", &missing_id], "its payload's message_id field names it");
        let unknown = "00000000-0000-4000-8000-000000000000";
        refused(&env, &["dead-letters", "resend", "--id", unknown], "no dead letter has the id");
        refused(&env, &["account", "show", "--user", "nobody"], "no account for user nobody");

        // Headers in, one more record produced with the same identity: dropped as a redelivery.
        let headers = OwnedHeaders::new().insert(Header { key: "message-id", value: Some(identity.as_str()) });
        let record = FutureRecord::<str, str>::to("pay.order").payload("not json at all").headers(headers);
        producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        let deadline = Instant::now() + SETTLED_WITHIN;
        while !succeed(&env, &["consumer", "lag"]).contains("on pay.order: lag 0 message(s)") {
            assert!(Instant::now() < deadline, "the group did not catch up");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let listed = succeed(&env, &["dead-letters", "list"]);
        assert!(listed.starts_with("3 dead letter(s)"), "a second copy of a re-sent command has no effect:\n{listed}");
    });
}

#[test]
fn commands_explain_themselves_and_refuse_without_their_settings() {
    let _limit = payment_core::testing::WallClockLimit::arm(Duration::from_secs(120));
    for (args, says) in [
        (vec!["--help"], "dead-letters"),
        (vec!["dead-letters", "list", "--help"], "--limit"),
        (vec!["dead-letters", "resend", "--help"], "dead-letter-resend/<ID>"),
        (vec!["account", "show", "--help"], "--user"),
        (vec!["consumer", "lag", "--help"], "committed offset"),
    ] {
        let help = succeed(&[], &args);
        assert!(help.contains(says), "{args:?} --help should mention {says:?}:\n{help}");
    }
    refused(&[], &["dead-letters", "list"], "dead-letters list reads the PostgreSQL store: set DATABASE_URL");
    refused(&[], &["account", "show", "--user", "42"], "account show reads the PostgreSQL store: set DATABASE_URL");
    refused(&[], &["consumer", "lag"], "consumer lag talks to Kafka: set KAFKA_BROKERS");
    let database = [("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")];
    refused(&database, &["dead-letters", "resend", "--id", "00000000-0000-4000-8000-000000000000"], "PostgreSQL");
    refused(&[], &["account", "show", "--user", "has space"], "invalid value");
    // A property librdkafka refuses is named, its secret value is not printed.
    let planted = "planted-Secret-4711";
    let property = format!("ssl.key.passwordz={planted}");
    let kafka = [("KAFKA_BROKERS", "127.0.0.1:1"), ("KAFKA_PROPERTIES", property.as_str())];
    let (ok, stdout, stderr) = operator(&kafka, &["consumer", "lag"]);
    assert!(!ok && stderr.contains("ssl.key.passwordz"), "the refused property is named:\n{stderr}");
    assert!(!stdout.contains(planted) && !stderr.contains(planted), "the secret was printed:\n{stdout}\n{stderr}");
}
