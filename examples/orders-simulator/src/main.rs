//! The simulator as a command: every plan and target field as a flag and an environment
//! variable, a progress bar while running, the report table at the end, and a non-zero exit on
//! any violation or error.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use orders_simulator::{prepare, run, Plan, Progress, Target, Topics};
use rust_decimal::Decimal;
use tracing_subscriber::EnvFilter;

/// Plays the Orders Service against the payment service: funds accounts over HTTP, sends
/// `pay.order` (with redeliveries and re-sends), collects the outcomes and verifies them.
#[derive(Debug, Parser)]
#[command(name = "orders-simulator", version)]
struct Args {
    /// Base URL of the payment service's HTTP API.
    #[arg(long, env = "SIM_HTTP_BASE", default_value = "http://127.0.0.1:8080")]
    http_base: String,
    /// Kafka bootstrap servers (the service logs its embedded broker's as `bootstrap_servers`).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "TOPIC_PAY_ORDER", default_value_t = Topics::default().pay_order)]
    topic_pay_order: String,
    #[arg(long, env = "TOPIC_ORDER_PAID", default_value_t = Topics::default().order_paid)]
    topic_order_paid: String,
    #[arg(long, env = "TOPIC_ORDER_PAYMENT_FAILED", default_value_t = Topics::default().order_payment_failed)]
    topic_order_payment_failed: String,
    #[arg(long, env = "TOPIC_REFUND_ORDER", default_value_t = Topics::default().refund_order)]
    topic_refund_order: String,
    #[arg(long, env = "TOPIC_ORDER_REFUNDED", default_value_t = Topics::default().order_refunded)]
    topic_order_refunded: String,
    #[arg(long, env = "TOPIC_ORDER_REFUND_FAILED", default_value_t = Topics::default().order_refund_failed)]
    topic_order_refund_failed: String,
    #[arg(long, env = "SIM_ORDERS", default_value_t = Plan::default().orders)]
    orders: usize,
    #[arg(long, env = "SIM_USERS", default_value_t = Plan::default().users)]
    users: usize,
    /// Deposited once into each account.
    #[arg(long, env = "SIM_DEPOSIT_PER_USER", default_value_t = Plan::default().deposit_per_user)]
    deposit_per_user: Decimal,
    #[arg(long, env = "SIM_AMOUNT_MIN_CENTS", default_value_t = Plan::default().amount_min_cents)]
    amount_min_cents: u64,
    #[arg(long, env = "SIM_AMOUNT_MAX_CENTS", default_value_t = Plan::default().amount_max_cents)]
    amount_max_cents: u64,
    /// `pay.order` messages per second; unset = as fast as possible.
    #[arg(long, env = "SIM_RATE_PER_SEC")]
    rate_per_sec: Option<u32>,
    /// Share of orders whose message is produced twice (same message_id).
    #[arg(long, env = "SIM_DUPLICATE_RATIO", default_value_t = Plan::default().duplicate_ratio)]
    duplicate_ratio: f64,
    /// Share of orders sent again under a new message_id.
    #[arg(long, env = "SIM_RESEND_RATIO", default_value_t = Plan::default().resend_ratio)]
    resend_ratio: f64,
    /// Share of the paid orders refunded afterwards (some whole, some partially, some twice).
    #[arg(long, env = "SIM_REFUND_RATIO", default_value_t = Plan::default().refund_ratio)]
    refund_ratio: f64,
    /// Order and user ids as JSON integers.
    #[arg(long, env = "SIM_INTEGER_IDS")]
    integer_ids: bool,
    #[arg(long, env = "SIM_SEED", default_value_t = Plan::default().seed)]
    seed: u64,
    /// Keeps this run's ids apart from earlier runs' on the same store; default: the Unix time
    /// in seconds (modulo 10^8, so integer ids stay below 2^53).
    #[arg(long, env = "SIM_NAMESPACE")]
    namespace: Option<u64>,
    /// Longest the HTTP API may stay unreachable or not ready for one request, in seconds.
    #[arg(long, env = "SIM_READY_TIMEOUT_SECS", default_value_t = Plan::default().ready_timeout.as_secs())]
    ready_timeout_secs: u64,
    /// Longest to wait for every order's outcome once all is produced, in seconds.
    #[arg(long, env = "SIM_OUTCOME_TIMEOUT_SECS", default_value_t = Plan::default().outcome_timeout.as_secs())]
    outcome_timeout_secs: u64,
    /// How long to keep listening once every order has an outcome, in milliseconds.
    #[arg(long, env = "SIM_SETTLE_MS", default_value_t = Plan::default().settle.as_millis() as u64)]
    settle_ms: u64,
    /// List every violation, not only the first 20.
    #[arg(long, env = "SIM_ALL_VIOLATIONS")]
    all_violations: bool,
    /// No progress bar (e.g. in CI logs).
    #[arg(long, env = "SIM_QUIET")]
    quiet: bool,
}

impl Args {
    fn target(&self) -> Target {
        Target {
            http_base: self.http_base.clone(),
            brokers: self.brokers.clone(),
            topics: Topics {
                pay_order: self.topic_pay_order.clone(),
                order_paid: self.topic_order_paid.clone(),
                order_payment_failed: self.topic_order_payment_failed.clone(),
                refund_order: self.topic_refund_order.clone(),
                order_refunded: self.topic_order_refunded.clone(),
                order_refund_failed: self.topic_order_refund_failed.clone(),
            },
        }
    }

    fn plan(&self) -> Plan {
        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
        Plan {
            orders: self.orders,
            users: self.users,
            deposit_per_user: self.deposit_per_user,
            amount_min_cents: self.amount_min_cents,
            amount_max_cents: self.amount_max_cents,
            rate_per_sec: self.rate_per_sec,
            duplicate_ratio: self.duplicate_ratio,
            resend_ratio: self.resend_ratio,
            refund_ratio: self.refund_ratio,
            integer_ids: self.integer_ids,
            seed: self.seed,
            namespace: self.namespace.unwrap_or(now_secs % orders_simulator::MAX_INTEGER_NAMESPACE),
            ready_timeout: Duration::from_secs(self.ready_timeout_secs),
            outcome_timeout: Duration::from_secs(self.outcome_timeout_secs),
            settle: Duration::from_millis(self.settle_ms),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (target, plan) = (args.target(), args.plan());
    eprintln!("namespace {}: preparing {} accounts at {}", plan.namespace, plan.users, target.http_base);
    let preparing = std::time::Instant::now();
    let accounts = match prepare(&target, &plan).await {
        Ok(accounts) => {
            eprintln!("prepared {} accounts in {:.2} s", accounts.accounts.len(), preparing.elapsed().as_secs_f64());
            accounts
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bars = MultiProgress::with_draw_target(if args.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let produced = bars.add(ProgressBar::new(0).with_style(style.clone()).with_prefix("produced"));
    let outcomes = bars.add(ProgressBar::new(plan.orders as u64).with_style(style).with_prefix("outcomes"));
    let result = run(&target, &plan, &accounts, |progress: Progress| {
        produced.set_length(progress.messages_total as u64);
        produced.set_position(progress.messages_produced as u64);
        outcomes.set_position(progress.orders_with_outcome as u64);
    })
    .await;
    produced.finish();
    outcomes.finish();
    match result {
        Ok(report) => {
            if args.all_violations {
                println!("{report:#}");
            } else {
                println!("{report}");
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
