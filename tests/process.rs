//! The real binary under real failures. Each test hosts a Kafka-protocol broker (librdkafka's
//! mock cluster) and a throwaway PostgreSQL, spawns `payment-service` against them, drives it
//! with the orders simulator (the Orders Service's side: accounts and deposits over HTTP,
//! `pay.order` with redeliveries and re-sends, outcome events read back and verified) and breaks
//! something while the orders flow: SIGKILL, an instance lost, the database stopped, SIGTERM.
//!
//! The simulator's verdict is the assertion: every order has exactly one kind of outcome, none
//! is paid twice, every event id belongs to one order, ids echo the command's JSON types, and
//! every balance equals its deposit minus the orders paid.

mod harness;

use std::time::{Duration, SystemTime};

use harness::{one_at_a_time, Service};
use orders_simulator::{prepare, run, Plan, Report, Target};
use payment_postgres::testing::server::TestServer;
use rdkafka::mocking::MockCluster;

const READY_WITHIN: Duration = Duration::from_secs(60);

/// The broker and the database of one test.
struct Stack {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
    database_url: String,
    /// The shared test server runs with `fsync` off for speed: the service must be told to
    /// accept it. A dedicated (outage) server is durable and needs no such setting.
    allow_lost_commits: bool,
}

impl Stack {
    async fn start(database_url: Option<String>) -> Stack {
        let cluster = harness::broker(4);
        let brokers = cluster.bootstrap_servers();
        let (database_url, allow_lost_commits) = match database_url {
            Some(url) => (url, false),
            None => (payment_postgres::testing::fresh_database().await, true),
        };
        Stack { _cluster: cluster, brokers, database_url, allow_lost_commits }
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("KAFKA_BROKERS", self.brokers.clone()),
            // A killed member's partitions wait for its session to time out: keep that short.
            ("KAFKA_PROPERTIES", "session.timeout.ms=6000,heartbeat.interval.ms=500".into()),
            ("OUTBOX_POLL_MS", "200".into()),
            ("KAFKA_FETCH_WAIT_MAX_MS", "10".into()),
            ("DATABASE_ALLOW_LOST_COMMITS", self.allow_lost_commits.to_string()),
        ]
    }

    fn spawn(&self, name: &str) -> Service {
        let settings = self.settings();
        let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Service::spawn(name, &env)
    }
}

/// A pseudo-random number in `0..bound`, different on every run; printed where it matters.
fn random_below(bound: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound.max(1)
}

fn plan(orders: usize, users: usize, rate_per_sec: u32) -> Plan {
    Plan {
        orders,
        users,
        rate_per_sec: Some(rate_per_sec),
        duplicate_ratio: 0.2,
        resend_ratio: 0.1,
        seed: random_below(1 << 32),
        ..Plan::default()
    }
}

fn assert_passed(name: &str, report: &Report, services: &[&Service]) {
    println!("{name}:\n{report}");
    for service in services {
        assert_eq!(service.log_count("panicked"), 0, "{} panicked:\n{}", service.name, service.log_tail());
    }
    assert!(
        report.passed() && report.without_outcome == 0,
        "{name}: {} violations, {} orders without an outcome: {:#?}",
        report.violations.len(),
        report.without_outcome,
        report.violations.iter().take(20).collect::<Vec<_>>()
    );
}

#[test]
fn sigkill_three_times_loses_no_command_and_pays_no_order_twice() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let stack = Stack::start(None).await;
        let http = reqwest::Client::new();
        let mut service = stack.spawn("kill-9");
        service.wait_ready(&http, READY_WITHIN).await;
        let plan = plan(5_000, 100, 1_000);
        let target = Target::new(&service.base_url, &stack.brokers);
        let accounts = prepare(&target, &plan).await.expect("accounts and deposits");

        let killer = async {
            let mut kills = Vec::new();
            for _ in 0..3 {
                let wait = Duration::from_millis(500 + random_below(2_500));
                tokio::time::sleep(wait).await;
                service.kill9();
                kills.push(wait);
                service.start();
                service.wait_ready(&http, READY_WITHIN).await;
            }
            kills
        };
        let (report, kills) = tokio::join!(run(&target, &plan, &accounts, |_| {}), killer);
        let report = report.expect("the simulator ran");
        println!("killed with SIGKILL after {kills:?} (each time restarted), {} starts", service.starts);
        assert_eq!(service.starts, 4);
        assert_passed("kill -9", &report, &[&service]);
    });
}

#[test]
fn a_second_instance_takes_over_the_partitions_and_the_outbox_of_a_killed_one() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let stack = Stack::start(None).await;
        let http = reqwest::Client::new();
        // The first instance starts alone, so it holds the outbox leadership when it is killed.
        let mut first = stack.spawn("first");
        first.wait_ready(&http, READY_WITHIN).await;
        let second = stack.spawn("second");
        second.wait_ready(&http, READY_WITHIN).await;
        let plan = plan(4_000, 100, 1_000);
        let target = Target::new(&second.base_url, &stack.brokers);
        let accounts = prepare(&target, &plan).await.expect("accounts and deposits");

        let killer = async {
            tokio::time::sleep(Duration::from_millis(1_000 + random_below(1_500))).await;
            let led = first.log_count("outbox publisher is the leader");
            first.kill9();
            led
        };
        let (report, first_led) = tokio::join!(run(&target, &plan, &accounts, |_| {}), killer);
        let report = report.expect("the simulator ran");
        let second_led = second.log_count("outbox publisher is the leader");
        println!("first instance led the outbox {first_led}× before SIGKILL; the second took it {second_led}×");
        assert_eq!((first_led, second_led), (1, 1), "the leadership moved from the killed instance");
        assert_passed("two instances, one killed", &report, &[&first, &second]);
    });
}

#[test]
fn a_database_restart_is_reported_not_ready_and_ridden_out() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let database = TestServer::dedicated().expect("a throwaway PostgreSQL server");
        let stack = Stack::start(Some(database.database_url("postgres"))).await;
        let http = reqwest::Client::new();
        let service = stack.spawn("database-restart");
        service.wait_ready(&http, READY_WITHIN).await;
        let plan = plan(3_000, 100, 500);
        let target = Target::new(&service.base_url, &stack.brokers);
        let accounts = prepare(&target, &plan).await.expect("accounts and deposits");

        let outage = async {
            tokio::time::sleep(Duration::from_millis(1_500 + random_below(1_500))).await;
            database.stop_immediately().expect("stop the database");
            let stopped = tokio::time::Instant::now();
            let mut not_ready_after = None;
            while not_ready_after.is_none() && stopped.elapsed() < Duration::from_secs(20) {
                if service.readiness(&http).await == Some(false) {
                    not_ready_after = Some(stopped.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            database.start_again().expect("start the database again");
            (not_ready_after, stopped.elapsed())
        };
        let (report, (not_ready_after, down_for)) = tokio::join!(run(&target, &plan, &accounts, |_| {}), outage);
        let report = report.expect("the simulator ran");
        println!("database down for {down_for:?}; /readyz answered 503 after {not_ready_after:?}");
        assert!(not_ready_after.is_some(), "/readyz answered 503 while the database was down");
        service.wait_ready(&http, READY_WITHIN).await;
        assert_passed("database restart", &report, &[&service]);
    });
}

#[test]
fn sigterm_under_load_exits_cleanly_in_time_and_a_restart_continues() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let stack = Stack::start(None).await;
        let http = reqwest::Client::new();
        let mut service = stack.spawn("sigterm");
        service.wait_ready(&http, READY_WITHIN).await;
        let plan = plan(3_000, 100, 1_000);
        let target = Target::new(&service.base_url, &stack.brokers);
        let accounts = prepare(&target, &plan).await.expect("accounts and deposits");

        let stopper = async {
            tokio::time::sleep(Duration::from_millis(1_000 + random_below(1_500))).await;
            let exit = service.terminate(Duration::from_secs(10));
            service.start();
            exit
        };
        let (report, exit) = tokio::join!(run(&target, &plan, &accounts, |_| {}), stopper);
        let report = report.expect("the simulator ran");
        let Some((status, took)) = exit else { panic!("no exit within 10 s of SIGTERM:\n{}", service.log_tail()) };
        println!("SIGTERM: exit {status} after {took:?}");
        assert!(status.success(), "{status}:\n{}", service.log_tail());
        assert_passed("SIGTERM under load", &report, &[&service]);
    });
}
