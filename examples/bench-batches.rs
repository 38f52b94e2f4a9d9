//! Throughput of `PayOrders` on PostgreSQL by batch size, next to `pgbench` (TPC-B-like, the same
//! server, the same run) as the baseline.
//!
//! `cargo run --release --example bench-batches` — uses `DATABASE_URL` if set, else starts a
//! throwaway server from the local PostgreSQL binaries. `BENCH_SECONDS` sets each run's length.
//!
//! It also reports what the in-memory store holds per paid order (inbox, payment, ledger entry,
//! outbox row: all kept until retention prunes them), counted by the allocator: this binary's
//! allocator counts every allocation, a few atomic additions each.

#![forbid(unsafe_code)]

use std::alloc::System;
use std::process::Command;
use std::time::{Duration, Instant};

use payment_core::domain::{Amount, Inbound, MessageId, OrderId, PayOrder, UserId};
use payment_core::memory::MemoryStore;
use payment_core::ports::Store;
use payment_core::Payments;
use payment_postgres::testing::fresh_database;
use payment_postgres::{PgConfig, PgStore};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const USERS: usize = 1_000;
/// Orders paid into a fresh in-memory store to measure its growth.
const GROWTH_ORDERS: usize = 100_000;

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let length = Duration::from_secs(seconds);
    runtime.block_on(bench(length));
    baseline(&runtime.block_on(fresh_database()), length);
}

async fn bench(length: Duration) {
    let url = fresh_database().await;
    let store = PgStore::connect(&url, &PgConfig { max_connections: 8, ..PgConfig::default() }).await.expect("connect");
    println!("PayOrders on the in-memory store (the core's own cost), {}s per run", length.as_secs());
    run(Payments::new(MemoryStore::new()), length, &[(1, 1), (1, 100)]).await;
    memory_growth().await;
    println!("PayOrders on PostgreSQL, {}s per run", length.as_secs());
    run(Payments::new(store), length, &[(1, 1), (1, 10), (1, 100), (1, 500), (4, 1), (4, 100), (4, 500)]).await;
}

/// Heap bytes a fresh in-memory store gains per paid order, over [`GROWTH_ORDERS`] orders.
async fn memory_growth() {
    let payments = Payments::new(MemoryStore::new());
    let users = funded(&payments).await;
    let region = Region::new(ALLOCATOR);
    for first in (0..GROWTH_ORDERS).step_by(100) {
        let commands: Vec<Inbound> = (first..first + 100).map(|n| command(n, &users)).collect();
        payments.pay_orders(&commands).await.expect("batch");
    }
    let change = region.change();
    let held = change.bytes_allocated as f64 - change.bytes_deallocated as f64 + change.bytes_reallocated as f64;
    println!(
        "in-memory store: {GROWTH_ORDERS} paid orders hold {:.1} MiB more heap = {:.0} bytes per order",
        held / (1024.0 * 1024.0),
        held / GROWTH_ORDERS as f64
    );
}

async fn funded<S: Store>(payments: &Payments<S>) -> Vec<UserId> {
    let users: Vec<UserId> = (0..USERS).map(|i| UserId::new(format!("bench-{i}")).expect("user id")).collect();
    for user in &users {
        payments.create_account(user).await.expect("create");
        payments.deposit(user, "1000000000".parse().expect("amount"), None).await.expect("deposit");
    }
    users
}

/// The `n`th command: a debit of 0.01 on one of `users`.
fn command(n: usize, users: &[UserId]) -> Inbound {
    let order = PayOrder::new(
        OrderId::new(format!("o-{n}")).expect("order id"),
        users[n % USERS].clone(),
        "0.01".parse::<Amount>().expect("amount"),
    );
    Inbound::pay(MessageId::new(format!("m-{n}")).expect("message id"), order)
}

async fn run<S: Store>(payments: Payments<S>, length: Duration, shapes: &[(usize, usize)]) {
    let users = funded(&payments).await;
    println!("{USERS} accounts, every command a successful debit");
    println!("{:>8} {:>8} {:>14} {:>12} {:>14}", "clients", "batch", "commands/s", "batches/s", "ms/batch");
    let mut next = 0usize;
    for &(clients, batch) in shapes {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..clients {
            let (payments, users) = (payments.clone(), users.clone());
            let offset = next + client * 10_000_000;
            tasks.push(tokio::spawn(async move {
                let mut done = 0usize;
                while started.elapsed() < length {
                    let commands: Vec<Inbound> = (0..batch).map(|i| command(offset + done + i, &users)).collect();
                    payments.pay_orders(&commands).await.expect("batch");
                    done += batch;
                }
                done
            }));
        }
        let mut commands = 0;
        for task in tasks {
            commands += task.await.expect("task");
        }
        next += 100_000_000;
        let elapsed = started.elapsed().as_secs_f64();
        let batches = commands as f64 / batch as f64;
        println!(
            "{clients:>8} {batch:>8} {:>14.0} {:>12.0} {:>14.2}",
            commands as f64 / elapsed,
            batches / elapsed,
            elapsed * 1000.0 * clients as f64 / batches
        );
    }
}

/// `pgbench` TPC-B-like on a database of the same server: 5 statements per transaction, the
/// closest stock workload to a batch of one payment (6 statements).
fn baseline(url: &str, length: Duration) {
    let Some(pgbench) = ["pgbench", "/usr/lib/postgresql/15/bin/pgbench"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        println!("pgbench not found; no baseline");
        return;
    };
    let init = Command::new(pgbench).args(["-i", "-q", "-s", "10", url]).output();
    if !init.is_ok_and(|o| o.status.success()) {
        println!("pgbench -i failed; no baseline");
        return;
    }
    for clients in ["1", "4"] {
        let run = Command::new(pgbench)
            .args(["-n", "-c", clients, "-j", clients, "-T", &length.as_secs().to_string(), url])
            .output();
        match run {
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout);
                let tps = text.lines().find(|l| l.starts_with("tps")).unwrap_or("tps = ?");
                println!("pgbench TPC-B-like, {clients} client(s): {tps}");
            }
            Err(error) => println!("pgbench failed: {error}"),
        }
    }
}
