//! Which schema the database holds, for `MIGRATE=skip`: a runtime role without DDL rights runs
//! the service on a schema a separate migration role applied, and the service refuses to start
//! on a schema older than the one it was built for rather than fail on its first statement.

use std::collections::BTreeSet;

use crate::{PgStore, PostgresError};

impl PgStore {
    /// `Ok` when every migration embedded in this build is applied (successfully); otherwise
    /// [`PostgresError::SchemaNotCurrent`] with the first missing version. Applied migrations this
    /// build does not know (a newer release's) are accepted.
    pub async fn check_schema(&self) -> Result<(), PostgresError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| PostgresError::SchemaNotCurrent(format!("cannot read the applied migrations: {e}")))?;
        let applied: BTreeSet<i64> = applied.into_iter().collect();
        let missing = sqlx::migrate!("./migrations").iter().map(|m| m.version).find(|v| !applied.contains(v));
        match missing {
            None => Ok(()),
            Some(version) => Err(PostgresError::SchemaNotCurrent(format!(
                "migration {version} is not applied; run the migrations with the migration role (MIGRATE=auto) first"
            ))),
        }
    }
}
