//! Translation of sqlx errors into the core's [`StoreError`], and this crate's own errors.

use payment_core::ports::StoreError;

/// Errors of setting the store up.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The URL is invalid or the server did not accept a connection within the acquire timeout.
    /// The text never holds the URL, which may carry a password.
    #[error("cannot connect to PostgreSQL: {0}{hint}", hint = certificate_hint(.0))]
    Connect(#[source] sqlx::Error),
    /// A migration failed, or the database holds migrations this build does not know.
    #[error("cannot apply the schema migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `MIGRATE=skip` and the database's schema is older than this build's.
    #[error("the database schema is not current: {0}")]
    SchemaNotCurrent(String),
    /// A reconciliation query failed.
    #[error("cannot reconcile: {0}")]
    Reconcile(#[source] sqlx::Error),
}

/// rustls names a certificate from an unknown CA by its variant alone (`invalid peer certificate:
/// UnknownIssuer`), which reads like a bug rather than a cause; its other refusals (a name the
/// certificate does not hold, an expired certificate) already say what is wrong in words.
fn certificate_hint(error: &sqlx::Error) -> &'static str {
    if error.to_string().contains("UnknownIssuer") {
        " (unknown issuer: the server's certificate is not signed by a CA this client trusts; \
         give the CA that signed it with sslrootcert=<file>)"
    } else {
        ""
    }
}

/// Sorts a database error by what the caller can do about it: retry the unit of work
/// (conflicts), retry later (the server is unreachable), or nothing (a bug or corrupt data).
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // serialization_failure, deadlock_detected, unique_violation
                "40001" | "40P01" | "23505" => StoreError::Conflict(error.to_string()),
                // connection exceptions, operator intervention (e.g. pg_terminate_backend),
                // insufficient resources
                c if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") => {
                    StoreError::Unavailable(error.to_string())
                }
                _ => StoreError::Invariant(error.to_string()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Invariant(error.to_string()),
    }
}

/// A stored value that no longer passes the domain's validation.
pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Invariant(format!("stored {what} is invalid: {error}"))
}
