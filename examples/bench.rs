//! End-to-end benchmark of the payment service against the database's own limit, in one run,
//! on one machine, printed as one table: each figure beside its baseline, the ratio and the
//! target it is held to (met or missed).
//!
//! ```text
//! cargo run --release --example bench
//! ```
//!
//! The example builds the release `payment-service` binary itself (`cargo build --release --bin
//! payment-service`, a no-op when it is up to date; `BENCH_SERVICE_BIN=<path>` uses another), so
//! the service runs as its own process and its peak RSS is its own. It starts:
//!
//! - a dedicated throwaway PostgreSQL server from the local binaries with **fsync on**
//!   (`fsync`, `synchronous_commit`, `full_page_writes` at PostgreSQL's defaults, checked and
//!   printed), shared by the service and every baseline;
//! - a Kafka-protocol broker in this process (librdkafka's mock cluster), `pay.order`,
//!   `order.paid`, `order.payment_failed` and `pay.order.dlq` with 4 partitions each;
//! - the service on them, every other setting at its default (`DATABASE_URL`, `KAFKA_BROKERS`,
//!   `HTTP_ADDR` set); its log goes to a file in the temp directory.
//!
//! What is measured, in this order (a `CHECKPOINT` before each):
//!
//! 1. Baselines with `pgbench` (found like the test server finds `postgres`) on the same server:
//!    `-N` (TPC-B-like without the branch/teller updates) at 1 and 32 clients and `-S`
//!    (select-only) at 8 clients on a `pgbench -i -s 10` database; and the **floor**: a custom
//!    script doing in ONE statement what one consumer batch of B payments writes (inbox claim,
//!    account locks, payment lookup, guarded balance updates, payment, ledger and outbox rows;
//!    see `bench/postgres.rs`) on the service's schema, one connection, B = 500 (the consumer's
//!    default batch) and B = 100, reported as commands/s = tps × B. Latency percentiles of the
//!    pgbench runs come from their per-transaction logs.
//! 2. Payments end to end: the orders simulator funds the users over HTTP and makes the
//!    workload (`Plan::workload`: every order affordable, no redeliveries or re-sends); this
//!    example produces it to `pay.order` and reads every outcome event back
//!    (`bench/payments.rs`). `BENCH_ORDERS` (100,000) produced flat out, until every outcome is
//!    readable → commands/s, once per record key of `BENCH_KEY` (`order`, `user` or `both`, the
//!    default: the contract allows either, and they load the lanes differently).
//! 3. HTTP from this process (reqwest, one keep-alive connection per client): deposits of 1.00
//!    at 32 connections, balance reads at 8, `BENCH_SECONDS` each → requests/s, p50/p99.
//! 4. The service's peak RSS (`VmHWM` in `/proc/<pid>/status`).
//! 5. With `BENCH_INSTANCES=2` (the default), a second service instance joins the consumer group
//!    on the same database and broker, and the last key's flat-out run is repeated with both
//!    (ratio to one instance).
//! 6. With `BENCH_BACKLOG=1` (the default), what an operator sees after a deploy: the first key's
//!    `BENCH_ORDERS` commands wait on the broker (this process's, separate from the service's)
//!    while the first instance stops (SIGTERM), then a freshly started release binary with every
//!    setting at its default (librdkafka's 500 ms fetch wait included) drains them → time from
//!    its start to the first outcome, and commands/s from the first outcome to the last, against
//!    the floor.
//! 7. Offered loads of 20 % of the slower flat-out rate (picked by the run, rounded to 100/s: the
//!    latency targets' load) and a fixed 1,000 orders/s, `BENCH_SECONDS` each, the first key →
//!    latency from produce to outcome event (p50/p99, and its part up to the event's `paid_at`),
//!    and the outbox lag: read time − the event's `paid_at` (taken when the batch is decided, so
//!    it also holds the batch's apply and commit; both clocks are this machine's). Each runs on a
//!    broker of its own with an instance of its own on the same database (see `paced_run`: the
//!    mock broker's cost per fetch grows with its log), once the first instance has stopped.
//!
//! The broker is librdkafka's mock cluster, which — unlike Kafka — does not answer an empty
//! fetch early when data arrives: every consumer waits its whole `fetch.wait.max.ms` (librdkafka's
//! default: 500 ms) after each empty fetch, which would be most of every latency measured. So
//! every consumer here, the service's included (`KAFKA_FETCH_WAIT_MAX_MS`), runs with
//! `fetch.wait.max.ms=5`, close to what a real broker's early answer gives; `BENCH_FETCH_WAIT_MS`
//! changes it (`default` leaves librdkafka's 500 ms).
//!
//! Everything shares the machine: the load generators, the broker, PostgreSQL and the service
//! compete for the same cores, as pgbench's client does with the server. Settings:
//! `BENCH_ORDERS` (100000, also the most: see `MAX_ORDERS`), `BENCH_SECONDS` (10), `BENCH_USERS` (1000), `BENCH_PGBENCH_SCALE`
//! (10), `BENCH_FETCH_WAIT_MS` (5), `BENCH_KEY` (both), `BENCH_INSTANCES` (2), `BENCH_BACKLOG` (1),
//! `BENCH_SERVICE_BIN`;
//! the service inherits this process's environment, so e.g. `CONSUMER_MAX_BATCHES_IN_FLIGHT=1`
//! measures one batch at a time. With the defaults the whole run takes about 6 minutes.

#![forbid(unsafe_code)]

#[path = "bench/load.rs"]
mod load;
#[path = "bench/payments.rs"]
mod payments;
#[path = "bench/postgres.rs"]
mod postgres;
#[path = "bench/service.rs"]
mod service;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use orders_simulator::{Latency, Plan, Target};
use payment_postgres::testing::server::TestServer;
use rdkafka::mocking::MockCluster;
use rust_decimal::Decimal;

use load::{HttpRun, Request};
use payments::{Key, PaymentRun};
use postgres::Pgbench;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
/// A figure, or why it could not be measured.
type Measured<T> = Result<T, String>;

const TOPICS: [&str; 4] = ["pay.order", "order.paid", "order.payment_failed", "pay.order.dlq"];
/// The refund topics the service also reads and writes: they must exist, since the mock cluster
/// cannot create topics and the service refuses to start without them.
const REFUND_TOPICS: [&str; 3] = ["refund.order", "order.refunded", "order.refund_failed"];
const PARTITIONS: i32 = 4;
const TOPIC_NAMES: payments::Topics<'static> = payments::Topics {
    pay_order: TOPICS[0],
    order_paid: TOPICS[1],
    order_payment_failed: TOPICS[2],
    warm_up: WARM_UP_TOPIC,
};
/// The id namespace of the backlog run's users and orders (1–5 are the other runs').
const BACKLOG_NAMESPACE: u64 = 6;
/// A paced run's warm-up uses its run's namespace plus this.
const WARM_UP_NAMESPACE_OFFSET: u64 = 10;
/// Most orders flat out: librdkafka's mock broker keeps at most 5 MiB per partition and silently
/// drops the oldest records beyond that, consumed or not. 100,000 (25,000 per partition) fit; a
/// run of 200,000 lost 8,938 commands that way and then waited for their outcomes.
const MAX_ORDERS: usize = 100_000;
/// Where each run's producer sends one record before its clock starts (see `payments::Topics`).
const WARM_UP_TOPIC: &str = "bench.warm-up";
/// The consumer's default batch (`BATCH_MAX_MESSAGES`), and a smaller one.
const FLOOR_BATCHES: [usize; 2] = [500, 100];
/// The latency targets hold at this share of the run's flat-out rate (the slower key's), rounded
/// to 100 orders/s; the benchmark picks the rate so that a faster or slower machine is loaded alike.
const PACED_SHARE: f64 = 0.2;
/// A fixed offered load beside it, to compare runs and machines.
const FIXED_RATE: u32 = 1_000;
const DEPOSIT_CONNECTIONS: usize = 32;
const BALANCE_CONNECTIONS: usize = 8;
/// See `BENCH_FETCH_WAIT_MS` in the module documentation.
const DEFAULT_FETCH_WAIT_MS: u32 = 5;
/// Longest wait for a second instance to be assigned partitions.
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after that assignment the run starts (the first member's own assignment lands then).
const GROUP_SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the last outcome once everything is produced.
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(300);

struct Config {
    orders: usize,
    length: Duration,
    users: usize,
    scale: u32,
    /// `fetch.wait.max.ms` of every consumer (the service's and this benchmark's); `None`:
    /// librdkafka's default (500 ms).
    fetch_wait_ms: Option<u32>,
    /// The record keys of the flat-out runs, in order.
    keys: Vec<Key>,
    /// 2: the last key's flat-out run again with a second instance in the group.
    instances: usize,
    /// Last, a backlog of `orders` drained by a freshly started instance with default settings.
    backlog: bool,
}

impl Config {
    /// The settings every service instance of the run gets beyond its defaults (the fresh
    /// instance of the backlog run gets none).
    fn service_env(&self) -> Vec<(&'static str, String)> {
        self.fetch_wait_ms.map(|ms| ("KAFKA_FETCH_WAIT_MAX_MS", ms.to_string())).into_iter().collect()
    }

    fn from_env() -> Fallible<Config> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Fallible<T> {
            match std::env::var(name) {
                Ok(text) => text.trim().parse().map_err(|_| format!("{name}={text:?} is not a valid number").into()),
                Err(_) => Ok(default),
            }
        }
        let config = Config {
            orders: var("BENCH_ORDERS", 100_000)?,
            length: Duration::from_secs(var("BENCH_SECONDS", 10)?),
            users: var("BENCH_USERS", 1_000)?,
            scale: var("BENCH_PGBENCH_SCALE", 10)?,
            fetch_wait_ms: match std::env::var("BENCH_FETCH_WAIT_MS") {
                Ok(text) if text.trim() == "default" => None,
                Ok(_) => Some(var("BENCH_FETCH_WAIT_MS", 0)?),
                Err(_) => Some(DEFAULT_FETCH_WAIT_MS),
            },
            keys: match std::env::var("BENCH_KEY").as_deref().map(str::trim) {
                Ok("order") => vec![Key::Order],
                Ok("user") => vec![Key::User],
                Ok("both") | Err(_) => vec![Key::Order, Key::User],
                Ok(other) => return Err(format!("BENCH_KEY={other:?}: order, user or both").into()),
            },
            instances: var("BENCH_INSTANCES", 2)?,
            backlog: var::<u8>("BENCH_BACKLOG", 1)? != 0,
        };
        if !(1..=2).contains(&config.instances) {
            return Err("BENCH_INSTANCES must be 1 or 2".into());
        }
        if config.orders == 0 || config.length.is_zero() || config.users < DEPOSIT_CONNECTIONS || config.scale == 0 {
            return Err(format!("BENCH_ORDERS, BENCH_SECONDS and BENCH_PGBENCH_SCALE must be positive and BENCH_USERS at least {DEPOSIT_CONNECTIONS}").into());
        }
        if config.orders > MAX_ORDERS {
            return Err(format!(
                "BENCH_ORDERS must be at most {MAX_ORDERS}: the mock broker keeps 5 MiB per partition and drops the \
                 oldest records beyond that, read or not, so a larger flat-out run loses commands before the service \
                 can read them and waits for their outcomes for ever"
            )
            .into());
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // sqlx warns of every CHECKPOINT over a second: expected here, not news.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error")),
        )
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: building the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(&config)) {
        Ok(figures) => {
            print!("{}", figures.table(&config));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the table shows.
struct Figures {
    settings: String,
    pgbench_n1: Measured<Pgbench>,
    pgbench_n32: Measured<Pgbench>,
    pgbench_s8: Measured<Pgbench>,
    floors: Vec<(usize, Measured<Pgbench>)>,
    /// Flat out, per record key.
    payments: Vec<(Key, Measured<PaymentRun>)>,
    /// Flat out with two instances in the group, keyed by the last key.
    two_instances: Option<Measured<PaymentRun>>,
    /// A backlog drained by a freshly started instance with default settings, keyed by the
    /// first key.
    backlog: Option<Measured<PaymentRun>>,
    rates: Vec<(u32, Measured<PaymentRun>)>,
    /// The rate picked from the flat-out runs ([`PACED_SHARE`]), once they ran.
    paced: Option<u32>,
    deposits: Measured<HttpRun>,
    balances: Measured<HttpRun>,
    peak_rss: Measured<u64>,
}

fn not_run<T>() -> Measured<T> {
    Err("not run".into())
}

/// Runs a measurement, prints how it went, keeps the figure or the reason it is missing.
fn kept<T>(what: &str, result: Fallible<T>, show: impl Fn(&T) -> String) -> Measured<T> {
    match result {
        Ok(value) => {
            println!("  {what}: {}", show(&value));
            Ok(value)
        }
        Err(error) => {
            println!("  {what}: FAILED: {error}");
            Err(error.to_string())
        }
    }
}

async fn bench(config: &Config) -> Fallible<Figures> {
    let started = Instant::now();
    println!("starting a dedicated throwaway PostgreSQL server (fsync ON) …");
    let (server, settings) = postgres::start().await?;
    println!("  {settings}");
    let mut figures = Figures {
        settings,
        pgbench_n1: not_run(),
        pgbench_n32: not_run(),
        pgbench_s8: not_run(),
        floors: Vec::new(),
        payments: Vec::new(),
        two_instances: None,
        backlog: None,
        rates: Vec::new(),
        paced: None,
        deposits: not_run(),
        balances: not_run(),
        peak_rss: not_run(),
    };
    baselines(&server, config, &mut figures).await;
    service_figures(&server, config, &mut figures).await;
    println!("whole run: {:.0} s", started.elapsed().as_secs_f64());
    Ok(figures)
}

fn show_pgbench(run: &Pgbench) -> String {
    format!("{:.0} tps, p50 {} p99 {}", run.tps, ms(run.latency.p50), ms(run.latency.p99))
}

async fn baselines(server: &TestServer, config: &Config, figures: &mut Figures) {
    let secs = config.length.as_secs();
    println!("baselines: pgbench on the same server, {secs} s per run");
    let pgbench = match postgres::find_pgbench() {
        Ok(path) => path,
        Err(error) => {
            println!("  FAILED: {error}");
            let error = error.to_string();
            figures.pgbench_n1 = Err(error.clone());
            figures.pgbench_n32 = Err(error.clone());
            figures.pgbench_s8 = Err(error.clone());
            figures.floors = FLOOR_BATCHES.iter().map(|&b| (b, Err(error.clone()))).collect();
            return;
        }
    };
    let init = Instant::now();
    match postgres::init_pgbench(server, &pgbench, config.scale).await {
        Ok(url) => {
            println!("  pgbench -i -s {} in {:.0} s", config.scale, init.elapsed().as_secs_f64());
            let runs: [(&str, &[&str], u32, &mut Measured<Pgbench>); 3] = [
                ("pgbench -N -c 1", &["-N"], 1, &mut figures.pgbench_n1),
                ("pgbench -N -c 32", &["-N"], 32, &mut figures.pgbench_n32),
                ("pgbench -S -c 8", &["-S"], 8, &mut figures.pgbench_s8),
            ];
            for (what, mode, clients, slot) in runs {
                let run = match postgres::checkpoint(server).await {
                    Ok(()) => postgres::run(&pgbench, &url, mode, clients, config.length),
                    Err(error) => Err(error),
                };
                *slot = kept(what, run, show_pgbench);
            }
        }
        Err(error) => {
            println!("  pgbench -i FAILED: {error}");
            let error = error.to_string();
            figures.pgbench_n1 = Err(error.clone());
            figures.pgbench_n32 = Err(error.clone());
            figures.pgbench_s8 = Err(error);
        }
    }
    let floor_url = postgres::prepare_floor(server, config.users).await;
    for batch in FLOOR_BATCHES {
        let run = match &floor_url {
            Ok(url) => match postgres::checkpoint(server).await {
                Ok(()) => postgres::floor(&pgbench, url, batch, config.users, config.length),
                Err(error) => Err(error),
            },
            Err(error) => Err(format!("preparing the floor database: {error}").into()),
        };
        let shown = |run: &Pgbench| format!("{} commands/s ({})", thousands(run.tps * batch as f64), show_pgbench(run));
        figures.floors.push((batch, kept(&format!("floor, one statement per batch of {batch}"), run, shown)));
    }
}

async fn service_figures(server: &TestServer, config: &Config, figures: &mut Figures) {
    let fail_all = |figures: &mut Figures, error: String| {
        figures.payments = config.keys.iter().map(|&key| (key, Err(error.clone()))).collect();
        figures.rates = vec![(FIXED_RATE, Err(error.clone()))];
        figures.deposits = Err(error.clone());
        figures.balances = Err(error.clone());
        figures.peak_rss = Err(error);
    };
    // The mock cluster is not Send: it lives on this task until the service has stopped.
    let cluster = match mock_broker() {
        Ok(cluster) => cluster,
        Err(error) => return fail_all(figures, format!("the broker: {error}")),
    };
    let brokers = cluster.bootstrap_servers();
    println!("broker: librdkafka mock cluster at {brokers}, {} × {PARTITIONS} partitions", TOPICS.join(", "));
    let started = async {
        let binary = service::binary()?;
        let url = postgres::create_database(server, "payments").await?;
        let extra = config.service_env();
        let service = service::Service::start(&binary, &url, &brokers, &extra).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((binary, service))
    };
    let (binary, mut service) = match started.await {
        Ok(started) => started,
        Err(error) => return fail_all(figures, format!("the service: {error}")),
    };
    println!(
        "service: {} (pid {}) at {}, log {}",
        binary.display(),
        service.pid().unwrap_or_default(),
        service.base_url,
        service.log.display()
    );
    let target = Target::new(service.base_url.clone(), brokers.clone());

    let mut funded = Vec::new();
    // Namespaces 2 and 3 are the paced runs'.
    let namespaces = [1, 4];
    for (&key, namespace) in config.keys.iter().zip(namespaces) {
        println!(
            "payments end to end: {} orders produced flat out, keyed by {}",
            thousands(config.orders as f64),
            key.name()
        );
        let run = async {
            let (run, accounts) = payments(server, &target, config, namespace, config.orders, None, key).await?;
            if funded.is_empty() {
                funded = accounts;
            }
            Ok(run)
        };
        let run = run.await;
        let what = format!("flat out, keyed by {}", key.name());
        figures.payments.push((key, kept(&what, run.and_then(|run| service.check_alive().map(|()| run)), show_run)));
    }
    let first_key = config.keys.first().copied().unwrap_or(Key::Order);
    let slowest =
        figures.payments.iter().filter_map(|(_, run)| run.as_ref().ok()).map(PaymentRun::per_sec).reduce(f64::min);
    let users: Vec<String> = funded.iter().map(orders_simulator::Account::header).collect();
    for (request, connections, what) in [
        (Request::Deposit, DEPOSIT_CONNECTIONS, "deposits over HTTP"),
        (Request::Balance, BALANCE_CONNECTIONS, "balance reads over HTTP"),
    ] {
        println!("{what}: {connections} connections, {} s", config.length.as_secs());
        let run = async {
            if users.is_empty() {
                return Err("no funded users (the flat-out payments run failed)".into());
            }
            postgres::checkpoint(server).await?;
            load::drive(&service.base_url, &users, request, connections, config.length).await
        };
        let run = run.await.and_then(|run| service.check_alive().map(|()| run));
        let result = kept(what, run, |r: &HttpRun| {
            format!(
                "{} requests/s, p50 {} p99 {}, {} failed",
                thousands(r.per_sec()),
                ms(r.latency.p50),
                ms(r.latency.p99),
                r.failed
            )
        });
        match request {
            Request::Deposit => figures.deposits = result,
            Request::Balance => figures.balances = result,
        }
    }
    let peak = service.check_alive().and_then(|()| service.peak_rss());
    figures.peak_rss = kept("service peak RSS (VmHWM)", peak, |&bytes| mib(bytes));
    if config.instances == 2 {
        let key = config.keys.last().copied().unwrap_or(Key::User);
        figures.two_instances = Some(two_instances(server, &target, config, &binary, key).await);
    }
    if config.backlog {
        figures.backlog = Some(backlog(server, &target, config, &binary, first_key, service).await);
    } else {
        stop(service);
    }
    drop(cluster);
    // Last, with the first instance stopped: its publisher holds the database's leader lock, and
    // each paced run's instance must publish its own events to its own broker.
    let paced = slowest.map(|per_sec| ((per_sec * PACED_SHARE / 100.0).round() as u32).max(1) * 100);
    figures.paced = paced;
    let mut rates: Vec<u32> = paced.into_iter().chain([FIXED_RATE]).collect();
    rates.dedup();
    for (index, rate) in rates.into_iter().enumerate() {
        let orders = (u64::from(rate) * config.length.as_secs()) as usize;
        println!(
            "payments at {} orders/s offered for {} s ({} orders)",
            thousands(f64::from(rate)),
            config.length.as_secs(),
            thousands(orders as f64)
        );
        let run = paced_run(server, config, &binary, 2 + index as u64, orders, rate, first_key).await;
        figures.rates.push((rate, kept(&format!("{rate}/s"), run, show_run)));
    }
}

fn stop(service: service::Service) {
    match service.stop() {
        Ok((status, took)) => println!("service stopped with SIGTERM: {status} in {:.2} s", took.as_secs_f64()),
        Err(error) => println!("service stop: {error}"),
    }
}

/// What an operator sees after a deploy or an outage: `config.orders` commands wait on the
/// broker with no service reading them, then a freshly started `payment-service` (a new process,
/// every setting at its default: librdkafka's 500 ms fetch wait, the default lanes) drains them.
/// The accounts are funded through the running service, which then stops; the broker is this
/// process's, a separate process from the service's.
async fn backlog(
    server: &TestServer,
    target: &Target,
    config: &Config,
    binary: &std::path::Path,
    key: Key,
    running: service::Service,
) -> Measured<PaymentRun> {
    println!(
        "backlog: {} orders keyed by {} produced with no service reading, then drained by a fresh instance with default settings",
        thousands(config.orders as f64),
        key.name()
    );
    let run = async {
        let plan = plan(config, BACKLOG_NAMESPACE, config.orders, None);
        orders_simulator::prepare(target, &plan).await.map_err(|e| format!("preparing accounts: {e}"))?;
        stop(running);
        postgres::checkpoint(server).await?;
        let url = server.database_url("payments");
        let start = async {
            let spawned = Instant::now();
            let fresh = service::Service::start(&binary.to_path_buf(), &url, &target.brokers, &[]).await?;
            let ready = spawned.elapsed();
            until_assigned(&fresh).await?;
            Ok((fresh, ready, spawned.elapsed()))
        };
        let (run, (fresh, ready, assigned)) = payments::run(
            &target.brokers,
            &TOPIC_NAMES,
            PARTITIONS,
            &plan,
            key,
            config.fetch_wait_ms,
            OUTCOME_TIMEOUT,
            start,
        )
        .await?;
        println!(
            "  the fresh instance answered /readyz {:.1} s after its start and was assigned partitions {:.1} s after it",
            ready.as_secs_f64(),
            assigned.as_secs_f64()
        );
        stop(fresh);
        if run.paid != config.orders {
            return Err(format!("{} of {} orders paid, {} failed", run.paid, config.orders, run.failed).into());
        }
        Ok(run)
    };
    kept("backlog drained by a fresh instance", run.await, |run| {
        format!(
            "first outcome {:.1} s after the start, then {} of {} paid in {:.2} s = {} cmd/s{}",
            run.first_outcome.as_secs_f64(),
            thousands(run.paid as f64),
            thousands(run.orders as f64),
            run.drain.as_secs_f64(),
            thousands(run.drained_per_sec()),
            if run.extra_events > 0 {
                format!("; {} repeated outcome events", run.extra_events)
            } else {
                String::new()
            }
        )
    })
}

/// Waits until `service` logs its first partition assignment; how long that took.
async fn until_assigned(service: &service::Service) -> Fallible<Duration> {
    let joined = Instant::now();
    let assigned = |log: String| log.lines().any(|l| l.contains("partitions rebalanced") && l.contains("assign"));
    while !assigned(std::fs::read_to_string(&service.log).unwrap_or_default()) {
        if joined.elapsed() > GROUP_JOIN_TIMEOUT {
            return Err(format!("the instance got no partitions within {GROUP_JOIN_TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(joined.elapsed())
}

/// One paced run on a broker of its own, served by an instance of its own on the same
/// database. librdkafka's mock broker keeps no index of a partition's log: every fetch walks
/// the partition's message sets from the first (`rd_kafka_mock_msgset_find`), and a paced
/// producer writes one set per record, so on the broker of the flat-out runs the broker's own
/// thread took a third of this machine's CPU at 1,000/s and most of the latency measured
/// (`perf`, 2026-11-27). A Kafka broker finds an offset through its index.
async fn paced_run(
    server: &TestServer,
    config: &Config,
    binary: &std::path::Path,
    namespace: u64,
    orders: usize,
    rate: u32,
    key: Key,
) -> Fallible<PaymentRun> {
    let cluster = mock_broker()?;
    let brokers = cluster.bootstrap_servers();
    let url = server.database_url("payments");
    let extra = config.service_env();
    let mut fresh = service::Service::start(&binary.to_path_buf(), &url, &brokers, &extra).await?;
    let joined = until_assigned(&fresh).await?;
    println!("  on a fresh broker; its instance was assigned partitions after {:.1} s", joined.as_secs_f64());
    let target = Target::new(fresh.base_url.clone(), brokers.clone());
    // A running service has its pool's connections open and its statements prepared on each;
    // a fresh one opens and prepares them on its first batches, which would be the p99. So a
    // second of the same load first, in its own id namespace, off the clock.
    let warm_up = (rate as usize).min(orders);
    payments(server, &target, config, namespace + WARM_UP_NAMESPACE_OFFSET, warm_up, Some(rate), key).await?;
    let run = payments(server, &target, config, namespace, orders, Some(rate), key).await;
    let run = run.and_then(|(run, _)| fresh.check_alive().map(|()| run));
    stop(fresh);
    drop(cluster);
    run
}

/// A second instance joins the group on the same database and broker; one flat-out run with
/// both, then the second stops.
async fn two_instances(
    server: &TestServer,
    target: &Target,
    config: &Config,
    binary: &std::path::Path,
    key: Key,
) -> Measured<PaymentRun> {
    println!(
        "two instances in one consumer group: {} orders flat out, keyed by {}",
        thousands(config.orders as f64),
        key.name()
    );
    let run = async {
        let url = server.database_url("payments");
        let extra = config.service_env();
        let mut second = service::Service::start(&binary.to_path_buf(), &url, &target.brokers, &extra).await?;
        // Ready is not joined: the clock starts once the second instance logged its assignment
        // (the join round, the first member's revocation and reassignment take a few seconds on
        // the mock broker), and a little after.
        let joined = until_assigned(&second).await?;
        println!("  second instance assigned partitions after {:.1} s", joined.as_secs_f64());
        tokio::time::sleep(GROUP_SETTLE).await;
        let (run, _) = payments(server, target, config, 5, config.orders, None, key).await?;
        second.check_alive()?;
        match second.stop() {
            Ok((status, took)) => println!("  second instance stopped: {status} in {:.2} s", took.as_secs_f64()),
            Err(error) => println!("  second instance stop: {error}"),
        }
        Ok(run)
    };
    kept("flat out, two instances", run.await, show_run)
}

/// One run in its own id namespace: the simulator funds `config.users` accounts over HTTP
/// (every order affordable), then `orders` orders with no redeliveries or re-sends are produced
/// at `rate` or flat out, after a `CHECKPOINT`.
async fn payments(
    server: &TestServer,
    target: &Target,
    config: &Config,
    namespace: u64,
    orders: usize,
    rate: Option<u32>,
    key: Key,
) -> Fallible<(PaymentRun, Vec<orders_simulator::Account>)> {
    let plan = plan(config, namespace, orders, rate);
    let prepared = Instant::now();
    let accounts = orders_simulator::prepare(target, &plan).await.map_err(|e| format!("preparing accounts: {e}"))?;
    println!("  {} accounts funded over HTTP in {:.1} s", config.users, prepared.elapsed().as_secs_f64());
    postgres::checkpoint(server).await?;
    let ready = std::future::ready(Ok(()));
    let (run, ()) = payments::run(
        &target.brokers,
        &TOPIC_NAMES,
        PARTITIONS,
        &plan,
        key,
        config.fetch_wait_ms,
        OUTCOME_TIMEOUT,
        ready,
    )
    .await?;
    if run.paid != orders {
        return Err(format!("{} of {orders} orders paid, {} failed", run.paid, run.failed).into());
    }
    Ok((run, accounts.accounts))
}

/// `orders` orders over `config.users` users in their own id namespace, every one affordable, with
/// no redeliveries or re-sends, flat out (`rate` `None`) or paced.
fn plan(config: &Config, namespace: u64, orders: usize, rate: Option<u32>) -> Plan {
    Plan {
        orders,
        users: config.users,
        // 10^9 each: far above what any run can ask of one user (30.00 at most per order).
        deposit_per_user: Decimal::from(1_000_000_000u64),
        amount_min_cents: 100,
        amount_max_cents: 3_000,
        rate_per_sec: rate,
        duplicate_ratio: 0.0,
        resend_ratio: 0.0,
        namespace,
        ..Plan::default()
    }
}

fn show_run(run: &PaymentRun) -> String {
    format!(
        "{} of {} paid in {:.2} s (produced in {:.2} s) = {} cmd/s; produce → outcome p50 {} p99 {} max {} (→ paid_at p50 {} p99 {}); paid_at → readable p50 {} p99 {} max {} (→ producer p50 {} p99 {}, producer → read p50 {} p99 {}){}",
        thousands(run.paid as f64),
        thousands(run.orders as f64),
        run.elapsed.as_secs_f64(),
        run.producing.as_secs_f64(),
        thousands(run.per_sec()),
        ms(run.latency.p50),
        ms(run.latency.p99),
        ms(run.latency.max),
        ms(run.to_decided.p50),
        ms(run.to_decided.p99),
        ms(run.lag.p50),
        ms(run.lag.p99),
        ms(run.lag.max),
        ms(run.to_producer.p50),
        ms(run.to_producer.p99),
        ms(run.through_broker.p50),
        ms(run.through_broker.p99),
        if run.extra_events > 0 { format!("; {} repeated outcome events", run.extra_events) } else { String::new() }
    )
}

fn mock_broker() -> Fallible<MockCluster<'static, rdkafka::producer::DefaultProducerContext>> {
    let cluster = MockCluster::new(1)?;
    for topic in TOPICS.into_iter().chain(REFUND_TOPICS) {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    cluster.create_topic(WARM_UP_TOPIC, 1, 1)?;
    Ok(cluster)
}

// ---- the table ----

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `12,345` for a count or a rate.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// One line of the table.
struct Row {
    measure: String,
    figure: String,
    baseline: String,
    baseline_figure: String,
    ratio: String,
    target: String,
    verdict: String,
}

/// How a figure compares with its target.
enum Goal {
    None,
    /// Show the ratio to the baseline, with no target.
    Ratio,
    /// figure / baseline at least this share.
    RatioAtLeast(f64),
    /// figure at most this (of the figure's own unit).
    AtMost(f64),
}

fn row(
    measure: impl Into<String>,
    figure: Measured<(f64, String)>,
    baseline: (&str, Measured<(f64, String)>),
    goal: Goal,
) -> Row {
    let (baseline_name, baseline_value) = baseline;
    let ratio = match (&figure, &baseline_value) {
        (Ok((f, _)), Ok((b, _))) if *b > 0.0 && matches!(goal, Goal::Ratio | Goal::RatioAtLeast(_)) => Some(f / b),
        _ => None,
    };
    let (target, verdict) = match goal {
        Goal::None | Goal::Ratio => (String::new(), String::new()),
        Goal::RatioAtLeast(share) => (
            format!("≥ {:.0}%", share * 100.0),
            match ratio {
                Some(r) => (if r >= share { "met" } else { "MISSED" }).to_string(),
                None => "not measured".into(),
            },
        ),
        Goal::AtMost(limit) => (
            String::new(),
            match &figure {
                Ok((f, _)) => (if *f <= limit { "met" } else { "MISSED" }).to_string(),
                Err(_) => "not measured".into(),
            },
        ),
    };
    let shown = |m: &Measured<(f64, String)>| match m {
        Ok((_, text)) => text.clone(),
        Err(_) => "n/a".into(),
    };
    Row {
        measure: measure.into(),
        figure: shown(&figure),
        baseline: baseline_name.to_string(),
        baseline_figure: if baseline_name.is_empty() { String::new() } else { shown(&baseline_value) },
        ratio: ratio.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default(),
        target,
        verdict,
    }
}

fn rate(value: f64, unit: &str) -> (f64, String) {
    (value, format!("{} {unit}", thousands(value)))
}

fn millis(duration: Duration) -> (f64, String) {
    (duration.as_secs_f64() * 1000.0, ms(duration))
}

impl Figures {
    fn table(&self, config: &Config) -> String {
        let none = || ("", not_run());
        let flat = |m: &Measured<PaymentRun>| m.as_ref().map(|r| rate(r.per_sec(), "cmd/s")).map_err(Clone::clone);
        let n1x8 = self.pgbench_n1.as_ref().map(|p| rate(8.0 * p.tps, "cmd/s")).map_err(Clone::clone);
        let floor = |batch: usize| {
            self.floors
                .iter()
                .find(|(b, _)| *b == batch)
                .map(|(_, m)| m.as_ref().map(|p| rate(p.tps * batch as f64, "cmd/s")).map_err(Clone::clone))
                .unwrap_or_else(not_run)
        };
        let paced = self.paced.unwrap_or(FIXED_RATE);
        let at_rate = |rate: u32, of: fn(&PaymentRun) -> Duration| {
            self.rates
                .iter()
                .find(|(r, _)| *r == rate)
                .map(|(_, m)| m.as_ref().map(|run| millis(of(run))).map_err(Clone::clone))
                .unwrap_or_else(not_run)
        };
        let http = |m: &Measured<HttpRun>| m.as_ref().map(|r| rate(r.per_sec(), "req/s")).map_err(Clone::clone);
        let http_pct = |m: &Measured<HttpRun>, pick: fn(&Latency) -> Duration| {
            m.as_ref().map(|r| millis(pick(&r.latency))).map_err(Clone::clone)
        };
        let pg = |m: &Measured<Pgbench>| m.as_ref().map(|p| rate(p.tps, "tps")).map_err(Clone::clone);
        let pg_pct = |m: &Measured<Pgbench>, pick: fn(&Latency) -> Duration| {
            m.as_ref().map(|p| millis(pick(&p.latency))).map_err(Clone::clone)
        };
        let p50: fn(&Latency) -> Duration = |l| l.p50;
        let p99: fn(&Latency) -> Duration = |l| l.p99;
        let latency50: fn(&PaymentRun) -> Duration = |r| r.latency.p50;
        let latency99: fn(&PaymentRun) -> Duration = |r| r.latency.p99;
        let lag50: fn(&PaymentRun) -> Duration = |r| r.lag.p50;
        let lag99: fn(&PaymentRun) -> Duration = |r| r.lag.p99;
        let n = thousands(config.orders as f64);
        let against_floor = |measure: String, figure: Measured<(f64, String)>, key: Key| {
            let (share, target) = key.floor_target();
            row(measure, figure, ("floor B=500, 1 conn (tps × 500)", floor(500)), Goal::RatioAtLeast(share))
                .target(target)
        };
        let mut rows = Vec::new();
        for (key, run) in &self.payments {
            let payments = flat(run);
            let measure = format!("payments end to end ({n} flat out, keyed by {})", key.name());
            rows.push(against_floor(measure, payments.clone(), *key));
            rows.push(row("", payments.clone(), ("8 × pgbench -N, 1 client", n1x8.clone()), Goal::Ratio));
            rows.push(row("", payments, ("floor B=100, 1 conn (tps × 100)", floor(100)), Goal::Ratio));
        }
        if let Some(two) = &self.two_instances {
            let key = self.payments.last().map_or(Key::User, |(key, _)| *key);
            let one = self.payments.last().map_or_else(not_run, |(_, run)| flat(run));
            rows.push(row(
                format!("two instances, one group ({n} flat out, keyed by {})", key.name()),
                flat(two),
                ("one instance, same key, same run", one),
                Goal::RatioAtLeast(1.0),
            ));
        }
        if let Some(backlog) = &self.backlog {
            let key = self.payments.first().map_or(Key::Order, |(key, _)| *key);
            let drained = backlog.as_ref().map(|r| rate(r.drained_per_sec(), "cmd/s")).map_err(Clone::clone);
            let measure = format!("backlog of {n} keyed by {}, fresh instance, default settings", key.name());
            rows.push(against_floor(measure, drained.clone(), key));
            rows.push(row("", drained, ("8 × pgbench -N, 1 client", n1x8.clone()), Goal::Ratio));
            rows.push(row(
                "  its start → first outcome",
                backlog.as_ref().map(|r| millis(r.first_outcome)).map_err(Clone::clone),
                none(),
                Goal::None,
            ));
        }
        rows.extend([
            row(
                format!("payment latency p50 @ {paced}/s, 20 % of flat out (produce → outcome)"),
                at_rate(paced, latency50),
                none(),
                Goal::None,
            ),
            row(format!("payment latency p99 @ {paced}/s"), at_rate(paced, latency99), none(), Goal::AtMost(30.0))
                .target("≤ 30 ms"),
            row("payment latency p50 @ 1,000/s", at_rate(FIXED_RATE, latency50), none(), Goal::None),
            row("payment latency p99 @ 1,000/s", at_rate(FIXED_RATE, latency99), none(), Goal::None),
            row(
                "deposits, 32 connections",
                http(&self.deposits),
                ("pgbench -N, 32 clients", pg(&self.pgbench_n32)),
                Goal::RatioAtLeast(1.0),
            ),
            row(
                "  deposit p50",
                http_pct(&self.deposits, p50),
                ("  pgbench -N -c32 p50", pg_pct(&self.pgbench_n32, p50)),
                Goal::None,
            ),
            row(
                "  deposit p99",
                http_pct(&self.deposits, p99),
                ("  pgbench -N -c32 p99", pg_pct(&self.pgbench_n32, p99)),
                Goal::None,
            ),
            row(
                "balance reads, 8 connections",
                http(&self.balances),
                ("pgbench -S, 8 clients", pg(&self.pgbench_s8)),
                Goal::RatioAtLeast(0.5),
            ),
            row(
                "  balance p50",
                http_pct(&self.balances, p50),
                ("  pgbench -S -c8 p50", pg_pct(&self.pgbench_s8, p50)),
                Goal::None,
            ),
            row(
                "  balance p99",
                http_pct(&self.balances, p99),
                ("  pgbench -S -c8 p99", pg_pct(&self.pgbench_s8, p99)),
                Goal::None,
            ),
            row(
                format!("outbox lag p50 @ {paced}/s (paid_at → readable)"),
                at_rate(paced, lag50),
                none(),
                Goal::AtMost(10.0),
            )
            .target("≤ 10 ms"),
            row(format!("outbox lag p99 @ {paced}/s"), at_rate(paced, lag99), none(), Goal::AtMost(50.0))
                .target("≤ 50 ms"),
            row(
                "service peak RSS (VmHWM)",
                self.peak_rss.as_ref().map(|&b| (b as f64 / (1024.0 * 1024.0), mib(b))).map_err(Clone::clone),
                none(),
                Goal::AtMost(64.0),
            )
            .target("≤ 64 MiB"),
            row("pgbench -N, 1 client (for reference)", pg(&self.pgbench_n1), none(), Goal::None),
        ]);
        let header = Row {
            measure: "measure".into(),
            figure: "figure".into(),
            baseline: "baseline (same server, same run)".into(),
            baseline_figure: "baseline".into(),
            ratio: "ratio".into(),
            target: "target".into(),
            verdict: "verdict".into(),
        };
        let all: Vec<&Row> = std::iter::once(&header).chain(&rows).collect();
        let width = |f: fn(&Row) -> &String| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let w = [
            width(|r| &r.measure),
            width(|r| &r.figure),
            width(|r| &r.baseline),
            width(|r| &r.baseline_figure),
            width(|r| &r.ratio),
            width(|r| &r.target),
        ];
        let pad = |text: &str, width: usize, right: bool| {
            let fill = " ".repeat(width.saturating_sub(text.chars().count()));
            if right {
                format!("{fill}{text}")
            } else {
                format!("{text}{fill}")
            }
        };
        let mut out = String::new();
        out.push('\n');
        out.push_str(&format!(
            "End-to-end benchmark — PostgreSQL with fsync ON ({}), {} CPU(s), {} s per timed phase\n",
            self.settings,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            config.length.as_secs()
        ));
        out.push_str(&format!(
            "Broker: librdkafka mock cluster, 4 partitions, consumers' fetch.wait.max.ms={}; CONSUMER_MAX_BATCHES_IN_FLIGHT={}; the service's other settings at their defaults\n",
            config.fetch_wait_ms.map_or("500 (librdkafka default)".to_string(), |ms| ms.to_string()),
            std::env::var("CONSUMER_MAX_BATCHES_IN_FLIGHT")
                .unwrap_or_else(|_| format!("{} (default)", payment_kafka::DEFAULT_MAX_BATCHES_IN_FLIGHT))
        ));
        let line_width = w.iter().sum::<usize>() + 12 + 2 * 6;
        out.push_str(&"-".repeat(line_width));
        out.push('\n');
        for (index, r) in all.iter().enumerate() {
            out.push_str(&format!(
                "{}  {}  {}  {}  {}  {}  {}\n",
                pad(&r.measure, w[0], false),
                pad(&r.figure, w[1], true),
                pad(&r.baseline, w[2], false),
                pad(&r.baseline_figure, w[3], true),
                pad(&r.ratio, w[4], true),
                pad(&r.target, w[5], false),
                r.verdict
            ));
            if index == 0 {
                out.push_str(&"-".repeat(line_width));
                out.push('\n');
            }
        }
        out.push_str(&"-".repeat(line_width));
        out.push('\n');
        let mut missing = Vec::new();
        let mut note = |what: &str, m: Result<(), &String>| {
            if let Err(reason) = m {
                missing.push(format!("{what}: {reason}"));
            }
        };
        for (key, m) in &self.payments {
            note(&format!("payments keyed by {}", key.name()), m.as_ref().map(drop));
        }
        if let Some(two) = &self.two_instances {
            note("two instances", two.as_ref().map(drop));
        }
        for (rate, m) in &self.rates {
            note(&format!("payments at {rate}/s"), m.as_ref().map(drop));
        }
        note("deposits", self.deposits.as_ref().map(drop));
        note("balances", self.balances.as_ref().map(drop));
        note("peak RSS", self.peak_rss.as_ref().map(drop));
        note("pgbench -N -c1", self.pgbench_n1.as_ref().map(drop));
        note("pgbench -N -c32", self.pgbench_n32.as_ref().map(drop));
        note("pgbench -S -c8", self.pgbench_s8.as_ref().map(drop));
        for (batch, m) in &self.floors {
            note(&format!("floor B={batch}"), m.as_ref().map(drop));
        }
        for line in missing {
            out.push_str(&format!("not measured — {line}\n"));
        }
        out
    }
}

impl Row {
    fn target(mut self, target: &str) -> Row {
        self.target = target.into();
        self
    }
}
