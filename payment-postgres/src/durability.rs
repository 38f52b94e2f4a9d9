//! Whether the server keeps what it acknowledged. Exactly-once rests on it: the service publishes
//! a batch's events and stores its offsets once the commit is acknowledged, so a commit the
//! server then loses (a crash with `fsync=off`, or with `synchronous_commit=off` the last
//! fraction of a second of commits) is a payment whose event is out and whose command will not be
//! read again — and a re-send of that command then pays a second time (issue 18 (7): 26 orders
//! paid twice in one restart test on a server with `synchronous_commit=off`).
//!
//! Only the server's own settings are visible here. An asynchronous replica promoted on
//! failover loses the commits it had not received in the same way, and no setting of the primary
//! says so: `docs/guarantees.md` states that assumption.

use payment_core::ports::StoreError;

use crate::error::store_error;
use crate::PgStore;

/// The settings of the server that decide whether an acknowledged commit survives a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `fsync`: `false` means the server does not force its writes to disk at all.
    pub fsync: bool,
    /// `synchronous_commit` of the service's sessions: `off` acknowledges a commit before its
    /// WAL record is on disk; `local`, `on`, `remote_write`, `remote_apply` do not.
    pub synchronous_commit: String,
}

impl Durability {
    /// Whether a crash of the server can lose a commit it already acknowledged.
    pub fn loses_acknowledged_commits(&self) -> bool {
        !self.fsync || self.synchronous_commit.eq_ignore_ascii_case("off")
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fsync = if self.fsync { "on" } else { "off" };
        write!(f, "fsync={fsync}, synchronous_commit={}", self.synchronous_commit)
    }
}

impl PgStore {
    /// Reads `fsync` and `synchronous_commit` as a session of the pool sees them (a per-role or
    /// per-database setting included).
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let (fsync, synchronous_commit): (String, String) =
            sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(Durability { fsync: fsync.eq_ignore_ascii_case("on"), synchronous_commit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(fsync: bool, synchronous_commit: &str) -> Durability {
        Durability { fsync, synchronous_commit: synchronous_commit.into() }
    }

    #[test]
    fn commits_are_kept_only_with_fsync_and_a_synchronous_commit() {
        for kept in ["on", "local", "remote_write", "remote_apply"] {
            assert!(!settings(true, kept).loses_acknowledged_commits(), "{kept}");
            assert!(settings(false, kept).loses_acknowledged_commits(), "fsync off, {kept}");
        }
        assert!(settings(true, "off").loses_acknowledged_commits());
        assert_eq!(settings(false, "off").to_string(), "fsync=off, synchronous_commit=off");
    }
}
