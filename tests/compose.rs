//! Keeps `docker-compose.yml` and the `Dockerfile` honest against the binary they run: every
//! variable the compose file sets is a setting of `payment-service` (as its `--help` lists it),
//! ports agree with `HTTP_ADDR`, the simulator points at the compose services, and the image's
//! health check asks `/healthz` (liveness), and the image refuses the in-memory fallbacks. Nothing
//! here needs Docker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use serde_norway::Value;

const COMPOSE: &str = include_str!("../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../Dockerfile");

/// The topic-name settings; the service and the simulator must agree on each one they set.
const TOPIC_NAMES: [&str; 7] = [
    "TOPIC_PAY_ORDER",
    "TOPIC_ORDER_PAID",
    "TOPIC_ORDER_PAYMENT_FAILED",
    "TOPIC_DEAD_LETTER",
    "TOPIC_REFUND_ORDER",
    "TOPIC_ORDER_REFUNDED",
    "TOPIC_ORDER_REFUND_FAILED",
];

fn compose() -> Value {
    serde_norway::from_str(COMPOSE).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|services| services.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A service's `environment`, in map form or list (`NAME=value`) form.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map.iter().map(|(key, value)| (scalar(key), scalar(value))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let text = scalar(item);
                let (key, value) = text.split_once('=').unwrap_or((&text, ""));
                (key.to_string(), value.to_string())
            })
            .collect(),
        Some(other) => panic!("environment is neither a map nor a list: {other:?}"),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(other) => vec![scalar(other)],
    }
}

/// `payment-service --help`, with an empty environment so that clap prints `[env: NAME=]` and no
/// value from the machine running the test.
fn help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_payment-service"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("payment-service --help runs");
    assert!(output.status.success(), "payment-service --help failed: {output:?}");
    String::from_utf8(output.stdout).expect("--help prints UTF-8")
}

fn http_addr(environment: &BTreeMap<String, String>) -> SocketAddr {
    let text = environment.get("HTTP_ADDR").expect("the service sets HTTP_ADDR");
    text.parse().unwrap_or_else(|e| panic!("HTTP_ADDR {text:?} is not an address: {e}"))
}

fn admin_addr(environment: &BTreeMap<String, String>) -> SocketAddr {
    let text = environment.get("ADMIN_ADDR").expect("the service sets ADMIN_ADDR");
    text.parse().unwrap_or_else(|e| panic!("ADMIN_ADDR {text:?} is not an address: {e}"))
}

/// `host:port` → (host, port).
fn host_port(text: &str) -> (String, u16) {
    let (host, port) = text.rsplit_once(':').unwrap_or_else(|| panic!("{text:?} has no port"));
    (host.to_string(), port.parse().unwrap_or_else(|e| panic!("{text:?}: bad port: {e}")))
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn instruction_args(keyword: &str) -> Vec<String> {
    instructions()
        .into_iter()
        .filter_map(|line| {
            let (head, rest) = line.split_once(char::is_whitespace)?;
            head.eq_ignore_ascii_case(keyword).then(|| rest.trim().to_string())
        })
        .collect()
}

fn dockerfile_stages() -> Vec<String> {
    instruction_args("FROM")
        .iter()
        .filter_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            let at = words.iter().position(|w| w.eq_ignore_ascii_case("as"))?;
            words.get(at + 1).map(|name| name.to_string())
        })
        .collect()
}

fn exposed_ports() -> Vec<u16> {
    instruction_args("EXPOSE")
        .iter()
        .flat_map(|args| {
            args.split_whitespace().map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("EXPOSE port"))
        })
        .collect()
}

#[test]
fn every_variable_the_service_sets_is_a_setting_of_the_binary() {
    let compose = compose();
    let help = help();
    let environment = environment(service(&compose, "service"));
    assert!(!environment.is_empty(), "the service sets no environment");
    // `[env: NAME=value]`, or `[env: NAME]` for a setting whose value --help hides (a secret).
    let unknown: Vec<&String> = environment
        .keys()
        .filter(|name| !help.contains(&format!("[env: {name}=")) && !help.contains(&format!("[env: {name}]")))
        .collect();
    assert!(unknown.is_empty(), "set in docker-compose.yml but not settings of payment-service: {unknown:?}\n{help}");
}

#[test]
fn the_compose_file_sets_the_topic_creation_settings_for_its_single_broker() {
    let compose = compose();
    let service_env = environment(service(&compose, "service"));
    for name in ["CREATE_TOPICS", "TOPIC_PARTITIONS", "TOPIC_REPLICATION_FACTOR"] {
        assert!(service_env.contains_key(name), "the service does not set {name}");
    }
    assert_eq!(service_env["CREATE_TOPICS"], "true");
    let partitions: u32 = service_env["TOPIC_PARTITIONS"].parse().expect("TOPIC_PARTITIONS is a number");
    assert!(partitions >= 1);
    // One broker (node id 1) cannot hold more than one replica of a partition.
    assert_eq!(service_env["TOPIC_REPLICATION_FACTOR"], "1");
    assert_eq!(environment(service(&compose, "kafka")).get("KAFKA_NODE_ID").map(String::as_str), Some("1"));
}

#[test]
fn the_published_ports_are_the_ports_http_addr_and_admin_addr_listen_on() {
    let compose = compose();
    let service = service(&compose, "service");
    let addr = http_addr(&environment(service));
    assert!(addr.ip().is_unspecified(), "in a container HTTP_ADDR must listen on every interface, not {addr}");
    let admin = admin_addr(&environment(service));
    assert!(admin.ip().is_unspecified(), "in a container ADMIN_ADDR must listen on every interface, not {admin}");
    let ports = strings(service.get("ports"));
    assert!(!ports.is_empty(), "the service publishes no port");
    for mapping in &ports {
        let container = mapping.rsplit(':').next().unwrap().trim_end_matches("/tcp");
        let listened = [addr.port().to_string(), admin.port().to_string()];
        assert!(
            listened.iter().any(|p| p == container),
            "published {mapping:?} but HTTP_ADDR is {addr}, ADMIN_ADDR {admin}"
        );
    }
}

#[test]
fn the_service_reaches_postgres_and_kafka_by_their_compose_names() {
    let compose = compose();
    let environment = environment(service(&compose, "service"));
    let url = environment.get("DATABASE_URL").expect("the service sets DATABASE_URL");
    let authority = url.strip_prefix("postgres://").expect("DATABASE_URL is a postgres:// URL");
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, rest)| rest);
    let host_and_port = host_and_port.split('/').next().unwrap();
    assert_eq!(host_port(host_and_port), ("postgres".to_string(), 5432));
    service(&compose, "postgres");
    assert_brokers_are_the_compose_broker(&compose, &environment["KAFKA_BROKERS"]);
}

/// Every broker in `brokers` is the `kafka` service at a port it advertises under its compose name.
fn assert_brokers_are_the_compose_broker(compose: &Value, brokers: &str) {
    let advertised = environment(service(compose, "kafka"))
        .get("KAFKA_ADVERTISED_LISTENERS")
        .cloned()
        .expect("kafka sets KAFKA_ADVERTISED_LISTENERS");
    let advertised: Vec<(String, u16)> =
        advertised.split(',').map(|listener| host_port(listener.split_once("://").unwrap().1)).collect();
    for broker in brokers.split(',') {
        let (host, port) = host_port(broker.trim());
        assert_eq!(host, "kafka", "{broker} is not the compose service kafka");
        assert!(advertised.contains(&(host, port)), "kafka does not advertise {broker}: {advertised:?}");
    }
}

#[test]
fn the_simulator_points_at_the_service_and_the_broker() {
    let compose = compose();
    let simulator = service(&compose, "simulator");
    assert_eq!(strings(simulator.get("profiles")), ["simulator"], "the simulator runs only with its profile");
    let sim = environment(simulator);
    let port = http_addr(&environment(service(&compose, "service"))).port();
    assert_eq!(sim.get("SIM_HTTP_BASE"), Some(&format!("http://service:{port}")));
    let brokers = sim.get("KAFKA_BROKERS").expect("the simulator sets KAFKA_BROKERS");
    assert_brokers_are_the_compose_broker(&compose, brokers);
}

#[test]
fn the_service_and_the_simulator_name_the_same_topics() {
    let compose = compose();
    let service_env = environment(service(&compose, "service"));
    let simulator_env = environment(service(&compose, "simulator"));
    for name in TOPIC_NAMES {
        assert_eq!(service_env.get(name), simulator_env.get(name), "{name} differs between service and simulator");
    }
}

#[test]
fn compose_builds_stages_the_dockerfile_has() {
    let compose = compose();
    let stages = dockerfile_stages();
    assert_eq!(stages.last().map(String::as_str), Some("service"), "the default build target is the service");
    for (name, target) in [("service", "service"), ("simulator", "simulator")] {
        let build = service(&compose, name).get("build").expect("built from this repository");
        assert_eq!(build.get("target").map(scalar).as_deref(), Some(target), "{name}'s build target");
        assert!(stages.iter().any(|stage| stage == target), "the Dockerfile has no stage {target}: {stages:?}");
    }
}

#[test]
fn the_service_starts_once_postgres_and_kafka_are_healthy() {
    let compose = compose();
    let depends_on = service(&compose, "service").get("depends_on").expect("the service has depends_on");
    for dependency in ["postgres", "kafka"] {
        let condition = depends_on.get(dependency).and_then(|d| d.get("condition")).map(scalar);
        assert_eq!(condition.as_deref(), Some("service_healthy"), "{dependency}");
        assert!(service(&compose, dependency).get("healthcheck").is_some(), "{dependency} has no healthcheck");
    }
}

#[test]
fn the_image_health_check_asks_healthz_on_the_admin_port() {
    let checks = instruction_args("HEALTHCHECK");
    assert_eq!(checks.len(), 1, "one HEALTHCHECK: {checks:?}");
    // Liveness: a readiness check here would restart a healthy process during a database blip.
    assert!(checks[0].contains("/healthz"), "the health check does not ask /healthz: {}", checks[0]);
    // It follows ADMIN_ADDR, where /healthz is served once it is set; the image exposes both ports.
    assert!(checks[0].contains("${ADMIN_ADDR##*:}"), "the health check does not use ADMIN_ADDR's port: {}", checks[0]);
    let image_addr = |name: &str| -> SocketAddr {
        let prefix = format!("{name}=");
        instruction_args("ENV")
            .iter()
            .find_map(|args| args.strip_prefix(prefix.as_str()).map(str::to_string))
            .unwrap_or_else(|| panic!("the image sets ENV {name}="))
            .parse()
            .unwrap_or_else(|e| panic!("the image's {name} is not an address: {e}"))
    };
    let (http, admin) = (image_addr("HTTP_ADDR"), image_addr("ADMIN_ADDR"));
    assert!(http.ip().is_unspecified() && admin.ip().is_unspecified());
    assert_eq!(exposed_ports(), [http.port(), admin.port()]);
    let environment = environment(service(&compose(), "service"));
    assert_eq!(http_addr(&environment).port(), http.port());
    assert_eq!(admin_addr(&environment).port(), admin.port());
}

#[test]
fn the_image_refuses_to_start_on_the_in_memory_fallbacks() {
    let env = instruction_args("ENV");
    assert!(
        env.iter().any(|args| args == "REQUIRE_EXTERNAL=true"),
        "the image does not set REQUIRE_EXTERNAL=true: {env:?}"
    );
    let runtime = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).expect("the Dockerfile");
    for package in ["ca-certificates", "libssl3"] {
        assert!(runtime.contains(package), "the runtime image does not install {package}");
    }
}
