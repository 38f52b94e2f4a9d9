//! HTTP load from this process: requests over a fixed number of connections for a fixed time.

use std::time::{Duration, Instant};

use orders_simulator::Latency;

use super::Fallible;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one HTTP load did.
#[derive(Debug, Clone, Copy)]
pub struct HttpRun {
    pub ok: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Of the successful requests.
    pub latency: Latency,
}

impl HttpRun {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Which request each connection sends in a loop.
#[derive(Debug, Clone, Copy)]
pub enum Request {
    /// `POST /accounts/deposit` of 1.00, no idempotency key.
    Deposit,
    /// `GET /accounts/balance`.
    Balance,
}

/// `connections` clients, each with one keep-alive connection, each sending `request` back to
/// back for `length`, for users taken round robin from its own share of `users` (connection `c`
/// uses users `c`, `c + connections`, …, so connections never wait for each other's row locks,
/// as pgbench's random rows among a million hardly do).
pub async fn drive(
    base_url: &str,
    users: &[String],
    request: Request,
    connections: usize,
    length: Duration,
) -> Fallible<HttpRun> {
    if users.len() < connections {
        return Err(format!("{} users for {connections} connections", users.len()).into());
    }
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))?;
        let mine: Vec<String> = users.iter().skip(connection).step_by(connections).cloned().collect();
        let (deposit, balance) = (format!("{base_url}/accounts/deposit"), format!("{base_url}/accounts/balance"));
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut failed = 0usize;
            let mut first_error = None;
            let mut next = 0usize;
            while Instant::now() < deadline {
                let user = &mine[next % mine.len()];
                next += 1;
                let builder = match request {
                    Request::Deposit => client
                        .post(&deposit)
                        .header("x-user-id", user)
                        .header("content-type", "application/json")
                        .body(r#"{"amount": "1.00"}"#),
                    Request::Balance => client.get(&balance).header("x-user-id", user),
                };
                let sent = Instant::now();
                let outcome = match builder.send().await {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.map(drop).map_err(|e| e.to_string())
                    }
                    Ok(response) => Err(format!("HTTP {}", response.status())),
                    Err(error) => Err(error.to_string()),
                };
                match outcome {
                    Ok(()) => samples.push(sent.elapsed()),
                    Err(error) => {
                        failed += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (samples, failed, first_error)
        });
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (mine, failures, error) = joined.map_err(|e| format!("a load task failed: {e}"))?;
        samples.extend(mine);
        failed += failures;
        first_error = first_error.or(error);
    }
    let elapsed = started.elapsed();
    if let Some(error) = first_error {
        println!("  {failed} request(s) failed; first: {error}");
    }
    Ok(HttpRun { ok: samples.len(), failed, elapsed, latency: Latency::of(samples) })
}
