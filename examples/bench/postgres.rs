//! The database side: a dedicated throwaway server with fsync on, `pgbench` on it (TPC-B-like
//! without branch/teller updates, select-only) and the floor script: one batch of our rows
//! written by one statement.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orders_simulator::Latency;
use payment_postgres::testing::server::{ServerOptions, TestServer};
use payment_postgres::{PgConfig, PgStore};
use sqlx::{Connection, Executor, PgConnection};

use super::Fallible;

/// Starts the server with PostgreSQL's durable defaults and returns it with the settings it
/// reports (`fsync`, `synchronous_commit`, `full_page_writes`), for the output.
pub async fn start() -> Fallible<(TestServer, String)> {
    let server = TestServer::dedicated_with(ServerOptions { fsync: true })
        .map_err(|e| format!("starting the throwaway PostgreSQL server: {e}"))?;
    let mut admin = admin(&server).await?;
    let mut shown = Vec::new();
    for setting in ["server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers"] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut admin)
            .await
            .map_err(|e| format!("SHOW {setting}: {e}"))?;
        if ["fsync", "synchronous_commit", "full_page_writes"].contains(&setting) && value != "on" {
            return Err(format!("the benchmark server runs with {setting}={value}; it must be on").into());
        }
        shown.push(format!("{setting}={value}"));
    }
    Ok((server, shown.join(", ")))
}

async fn admin(server: &TestServer) -> Fallible<PgConnection> {
    Ok(PgConnection::connect(server.admin_url())
        .await
        .map_err(|e| format!("connecting to {}: {e}", server.admin_url()))?)
}

/// Creates database `name` and returns its URL.
pub async fn create_database(server: &TestServer, name: &str) -> Fallible<String> {
    admin(server)
        .await?
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    Ok(server.database_url(name))
}

/// Writes dirty pages out now, so one phase's checkpoint does not land in the next one's figures.
pub async fn checkpoint(server: &TestServer) -> Fallible<()> {
    admin(server).await?.execute("CHECKPOINT").await.map_err(|e| format!("CHECKPOINT: {e}"))?;
    Ok(())
}

/// `pgbench` where the test server finds `postgres`.
pub fn find_pgbench() -> Fallible<PathBuf> {
    payment_postgres::testing::server::find_program("pgbench")
        .ok_or_else(|| "pgbench not found on PATH or under /usr/lib/postgresql/*/bin".into())
}

/// One `pgbench` run: transactions per second and, from its per-transaction log, latencies.
#[derive(Debug, Clone, Copy)]
pub struct Pgbench {
    pub tps: f64,
    pub latency: Latency,
}

/// `pgbench -i -s <scale>` in a fresh database; returns its URL.
pub async fn init_pgbench(server: &TestServer, pgbench: &Path, scale: u32) -> Fallible<String> {
    let url = create_database(server, "pgbench").await?;
    let output = Command::new(pgbench)
        .args(["-i", "-q", "-s", &scale.to_string(), &url])
        .output()
        .map_err(|e| format!("running {}: {e}", pgbench.display()))?;
    if !output.status.success() {
        return Err(format!("pgbench -i failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(url)
}

/// `pgbench -n <mode> -c <clients> -T <length>` with a per-transaction log for the percentiles.
pub fn run(pgbench: &Path, url: &str, mode: &[&str], clients: u32, length: Duration) -> Fallible<Pgbench> {
    let logs = std::env::temp_dir().join(format!("payment-bench-pgbench-{}-{}", std::process::id(), next_id()));
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let prefix = logs.join("tx");
    let threads = clients.min(4);
    let output = Command::new(pgbench)
        .args(["-n", "-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &length.as_secs().to_string(), "-l", "--log-prefix"])
        .arg(&prefix)
        .args(mode)
        .arg(url)
        .output()
        .map_err(|e| format!("running {}: {e}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench {} -c {clients} failed: {}{}",
            mode.join(" "),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let tps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or_else(|| format!("no `tps = ` line in pgbench's output:\n{stdout}"))?;
    let latency = Latency::of(read_latencies(&logs)?);
    // The logs are only for the percentiles above.
    let _ = std::fs::remove_dir_all(&logs);
    Ok(Pgbench { tps, latency })
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Each line of a `pgbench -l` log: `client transaction latency_us script epoch_s epoch_us`.
fn read_latencies(dir: &Path) -> Fallible<Vec<Duration>> {
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        samples.extend(
            text.lines().filter_map(|line| line.split_whitespace().nth(2)?.parse().ok()).map(Duration::from_micros),
        );
    }
    Ok(samples)
}

/// One batch of `:batch` successful payments over `:users` accounts, as
/// `payment-postgres/src/tx.rs` and `apply.rs` write it — claim the message ids in the inbox,
/// lock the accounts in user-id order, look up earlier payments of the orders, then the guarded
/// balance updates (one per account, from the locked balance), one ledger entry, one payment and
/// one `order.paid` outbox row (the event's JSON and its four headers) per command — in ONE
/// statement: the server's floor for our rows, with no client round trips or decoding.
/// `payment-postgres` spends five statements and a commit on it; the publisher's marking of the
/// rows as published is not in it.
pub const FLOOR_SCRIPT: &str = "
WITH
cmd AS MATERIALIZED (
    SELECT n,
           'm-' || gen_random_uuid() AS message_id,
           'o-' || gen_random_uuid() AS order_id,
           'u-' || floor(random() * :users)::INT AS user_id,
           round((100 + floor(random() * 2901))::NUMERIC / 100, 2) AS amount
    FROM generate_series(1, :batch) AS n
),
claimed AS (
    INSERT INTO inbox (message_id)
    SELECT message_id FROM cmd ORDER BY message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
),
locked AS MATERIALIZED (
    SELECT user_id, balance FROM accounts
    WHERE user_id = ANY (ARRAY(SELECT user_id FROM cmd))
    ORDER BY user_id
    FOR UPDATE
),
earlier AS MATERIALIZED (
    SELECT order_id FROM payments WHERE order_id = ANY (ARRAY(SELECT order_id FROM cmd))
),
decided AS MATERIALIZED (
    SELECT c.n, c.message_id, c.order_id, c.user_id, c.amount, l.balance AS from_balance,
           l.balance - SUM(c.amount) OVER (PARTITION BY c.user_id ORDER BY c.n) AS balance_after,
           gen_random_uuid() AS entry_id, gen_random_uuid() AS transaction_id, gen_random_uuid() AS event_id,
           now() AS paid_at
    FROM cmd AS c
    JOIN claimed USING (message_id)
    JOIN locked AS l USING (user_id)
    WHERE c.order_id NOT IN (SELECT order_id FROM earlier)
),
balances AS (
    UPDATE accounts AS a SET balance = u.to_balance
    FROM (SELECT user_id, MIN(from_balance) AS from_balance, MIN(balance_after) AS to_balance
          FROM decided GROUP BY user_id) AS u
    WHERE a.user_id = u.user_id AND a.balance = u.from_balance
    RETURNING 1
),
ledger AS (
    INSERT INTO ledger_entries (entry_id, user_id, kind, amount, balance_after, order_id, created_at)
    SELECT entry_id, user_id, 'payment', amount, balance_after, order_id, paid_at FROM decided ORDER BY n
    RETURNING 1
),
paid AS (
    INSERT INTO payments (order_id, user_id, amount, transaction_id, event_id, paid_at)
    SELECT order_id, user_id, amount, transaction_id, event_id, paid_at FROM decided
    RETURNING 1
),
outbox AS (
    INSERT INTO outbox (topic, key, payload, headers)
    SELECT 'order.paid', order_id,
           convert_to(json_build_object('event_id', event_id, 'order_id', order_id, 'user_id', user_id,
                                        'amount', amount, 'status', 'success', 'transaction_id', transaction_id,
                                        'paid_at', paid_at)::TEXT, 'UTF8'),
           jsonb_build_array(jsonb_build_array('event-id', event_id::TEXT),
                             jsonb_build_array('event-type', 'order.paid'),
                             jsonb_build_array('correlation-id', message_id),
                             jsonb_build_array('content-type', 'application/json'))
    FROM decided ORDER BY n
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM balances) AS balances, (SELECT COUNT(*) FROM ledger) AS ledger,
       (SELECT COUNT(*) FROM paid) AS payments, (SELECT COUNT(*) FROM outbox) AS outbox;
";

/// A fresh database with the service's schema (its migrations) and `users` funded accounts
/// `u-0`…, for the floor script; returns its URL.
pub async fn prepare_floor(server: &TestServer, users: usize) -> Fallible<String> {
    let url = create_database(server, "floor").await?;
    let store = PgStore::connect(&url, &PgConfig { max_connections: 1, ..PgConfig::default() })
        .await
        .map_err(|e| format!("connecting to the floor database: {e}"))?;
    store.migrate().await.map_err(|e| format!("migrating the floor database: {e}"))?;
    sqlx::query(
        "INSERT INTO accounts (user_id, balance, created_at)
         SELECT 'u-' || n, 1000000000000, now() FROM generate_series(0, $1 - 1) AS n",
    )
    .bind(i64::try_from(users).map_err(|e| format!("users: {e}"))?)
    .execute(store.pool())
    .await
    .map_err(|e| format!("funding the floor accounts: {e}"))?;
    store.pool().execute("VACUUM ANALYZE").await.map_err(|e| format!("VACUUM ANALYZE: {e}"))?;
    // One batch by hand: a script that writes nothing would make a fast, meaningless floor.
    let counts: (i64, i64, i64, i64) = sqlx::query_as(&bind_script(2, users))
        .fetch_one(store.pool())
        .await
        .map_err(|e| format!("the floor script failed on a batch of 2: {e}"))?;
    if counts.1 != 2 || counts.2 != 2 || counts.3 != 2 || counts.0 < 1 {
        return Err(
            format!("the floor script wrote (balances, ledger, payments, outbox) = {counts:?} for 2 commands").into()
        );
    }
    store.pool().close().await;
    Ok(url)
}

fn bind_script(batch: usize, users: usize) -> String {
    FLOOR_SCRIPT.replace(":batch", &batch.to_string()).replace(":users", &users.to_string()).replace(';', "")
}

/// The floor script at batch size `batch` on one connection (the consumer applies one batch at
/// a time): transactions per second; commands per second is `tps × batch`.
pub fn floor(pgbench: &Path, url: &str, batch: usize, users: usize, length: Duration) -> Fallible<Pgbench> {
    let script = std::env::temp_dir().join(format!("payment-bench-floor-{}.sql", std::process::id()));
    std::fs::write(&script, FLOOR_SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    let script_arg = format!("{}", script.display());
    let batch = format!("batch={batch}");
    let users = format!("users={users}");
    let result = run(pgbench, url, &["-f", &script_arg, "-D", &batch, "-D", &users], 1, length);
    let _ = std::fs::remove_file(&script);
    result
}
