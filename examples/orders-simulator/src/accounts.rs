//! The HTTP side: creating and funding the accounts before a run, reading the balances after,
//! each request retried with bounded backoff while the service is unreachable or not ready.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Client, RequestBuilder, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::plan::{decimal_of, id_text};
use crate::{Plan, SimError, Target};

/// Requests in flight at once; the service serves them from a small pool anyway.
const CONCURRENT_REQUESTS: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One funded account.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// As the commands carry it (JSON string or integer).
    pub user_id: Value,
    /// What [`prepare`] deposited (once, however often the request was retried).
    pub deposited: Decimal,
    /// The balance right after the deposit: what the run's debits are counted from. Equal to
    /// `deposited` for a new account; more means the deposit was credited twice, or the account
    /// held money already (a reused namespace).
    pub opening_balance: Decimal,
}

impl Account {
    /// The `X-User-Id` header value.
    pub fn header(&self) -> String {
        id_text(&self.user_id).unwrap_or_default()
    }
}

/// The accounts of a plan, indexed like [`Plan::user_ids`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accounts {
    pub accounts: Vec<Account>,
}

/// Creates every user's account (an existing one is fine) and deposits
/// [`Plan::deposit_per_user`] once, under an `Idempotency-Key` derived from the namespace and the
/// user, so that a deposit retried after a lost answer credits once.
pub async fn prepare(target: &Target, plan: &Plan) -> Result<Accounts, SimError> {
    plan.validate()?;
    let http = Http::new(target, plan.ready_timeout)?;
    http.wait_ready().await?;
    let accounts = futures::stream::iter(plan.user_ids())
        .map(|user_id| http.fund(user_id, plan))
        .buffered(CONCURRENT_REQUESTS)
        .try_collect()
        .await?;
    Ok(Accounts { accounts })
}

/// The current balance of every account, in order.
pub(crate) async fn read_balances(target: &Target, plan: &Plan, accounts: &Accounts) -> Result<Vec<Decimal>, SimError> {
    let http = Http::new(target, plan.ready_timeout)?;
    http.wait_ready().await?;
    futures::stream::iter(&accounts.accounts)
        .map(|account| http.balance(account.header()))
        .buffered(CONCURRENT_REQUESTS)
        .try_collect()
        .await
}

struct Http {
    client: Client,
    base: String,
    ready_timeout: Duration,
}

impl Http {
    fn new(target: &Target, ready_timeout: Duration) -> Result<Self, SimError> {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|error| SimError::HttpClient(error.to_string()))?;
        Ok(Self { client, base: target.http_base.trim_end_matches('/').to_string(), ready_timeout })
    }

    async fn wait_ready(&self) -> Result<(), SimError> {
        let (status, body) = self.send("GET /readyz", || self.client.get(format!("{}/readyz", self.base))).await?;
        expect(status, StatusCode::OK, "GET /readyz", &body)
    }

    async fn fund(&self, user_id: Value, plan: &Plan) -> Result<Account, SimError> {
        let user = id_text(&user_id).unwrap_or_default();
        let what = format!("POST /accounts for {user}");
        let (status, body) =
            self.send(&what, || self.client.post(format!("{}/accounts", self.base)).header("x-user-id", &user)).await?;
        if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
            return Err(SimError::Http { what, status: status.as_u16(), body: body.to_string() });
        }
        let what = format!("POST /accounts/deposit for {user}");
        let key = format!("orders-simulator-{}-deposit-{user}", plan.namespace);
        let amount = json!({ "amount": plan.deposit_per_user.to_string() });
        let (status, body) = self
            .send(&what, || {
                self.client
                    .post(format!("{}/accounts/deposit", self.base))
                    .header("x-user-id", &user)
                    .header("idempotency-key", &key)
                    .json(&amount)
            })
            .await?;
        expect(status, StatusCode::OK, &what, &body)?;
        let opening_balance = balance_of(&body, &what)?;
        Ok(Account { user_id, deposited: plan.deposit_per_user, opening_balance })
    }

    async fn balance(&self, user: String) -> Result<Decimal, SimError> {
        let what = format!("GET /accounts/balance for {user}");
        let (status, body) = self
            .send(&what, || self.client.get(format!("{}/accounts/balance", self.base)).header("x-user-id", &user))
            .await?;
        expect(status, StatusCode::OK, &what, &body)?;
        balance_of(&body, &what)
    }

    /// Sends until an answer that is not a server error arrives, backing off while the service
    /// is down or not ready, for at most `ready_timeout`. Safe for every request made here: they
    /// are reads, creations answered 409 when repeated, or deposits with an idempotency key.
    async fn send(&self, what: &str, request: impl Fn() -> RequestBuilder) -> Result<(StatusCode, Value), SimError> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let last = match request().send().await {
                Ok(response) if !response.status().is_server_error() => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Ok((status, body));
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(error) => error.to_string(),
            };
            if started.elapsed() + backoff > self.ready_timeout {
                return Err(SimError::NotReady { what: what.to_string(), waited: started.elapsed(), last });
            }
            tracing::debug!(what, last, "service not answering yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn expect(status: StatusCode, wanted: StatusCode, what: &str, body: &Value) -> Result<(), SimError> {
    if status == wanted {
        Ok(())
    } else {
        Err(SimError::Http { what: what.to_string(), status: status.as_u16(), body: body.to_string() })
    }
}

fn balance_of(body: &Value, what: &str) -> Result<Decimal, SimError> {
    decimal_of(&body["balance"]).ok_or_else(|| SimError::BadResponse {
        what: what.to_string(),
        detail: format!("no decimal balance in {body}"),
    })
}
