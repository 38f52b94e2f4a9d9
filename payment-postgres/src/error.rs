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
/// (conflicts), retry later (the server is unreachable, restarting, out of resources, or a
/// timeout fired), or nothing (the server refuses what it was given, and would again: a bug or
/// corrupt data). The first two are [`StoreError::is_transient`].
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match sqlstate_class(&code) {
                SqlState::Conflict => StoreError::Conflict(error.to_string()),
                SqlState::Unavailable => StoreError::Unavailable(error.to_string()),
                SqlState::Refused => StoreError::Invariant(error.to_string()),
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

/// What a SQLSTATE says about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlState {
    Conflict,
    Unavailable,
    Refused,
}

fn sqlstate_class(code: &str) -> SqlState {
    match code {
        // Class 40, transaction rollback (serialization_failure, deadlock_detected, ...), and
        // unique_violation: a race with a concurrent transaction.
        "23505" => SqlState::Conflict,
        c if c.starts_with("40") => SqlState::Conflict,
        // Class 08 connection exception, 53 insufficient resources, 57 operator intervention
        // (57P01 admin_shutdown, 57P03 cannot_connect_now, 57014 query_canceled by a
        // statement or lock timeout), 55P03 lock_not_available (a lock timeout).
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "55P03" => SqlState::Unavailable,
        _ => SqlState::Refused,
    }
}

/// A stored value that no longer passes the domain's validation.
pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Invariant(format!("stored {what} is invalid: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_transient_or_refused_as_postgresql_classes_them() {
        for code in ["40001", "40P01", "40003", "23505"] {
            assert_eq!(sqlstate_class(code), SqlState::Conflict, "{code}");
        }
        for code in ["08006", "08001", "53300", "53100", "57P01", "57P03", "57014", "55P03"] {
            assert_eq!(sqlstate_class(code), SqlState::Unavailable, "{code}");
        }
        // not_null_violation, check_violation, invalid_text_representation, numeric overflow,
        // character_not_in_repertoire: the same statement fails the same way again.
        for code in ["23502", "23514", "22P02", "22003", "22021", "XX000", ""] {
            assert_eq!(sqlstate_class(code), SqlState::Refused, "{code}");
        }
    }
}
