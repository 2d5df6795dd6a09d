//! The facade's own database: the HL7 v2 messages it receives (with their acknowledgements and
//! the quarantine of messages it could not apply) and the records derived from them, the
//! hash-chained audit trail and self-claimed relationships ([`audit`]).
//!
//! One diesel schema ([`schema`]) serves SQLite and PostgreSQL through the connection enum of
//! `scr-db`; migrations are embedded per backend in folders with identical names
//! (`migrations/sqlite/…`, `migrations/postgres/…`) and applied by [`Store::open`] or
//! [`run_migrations`]. The few dialect differences live in [`dialect`].

pub mod audit;
pub mod checkpoint;
pub mod consent;
pub mod dialect;
pub mod flags;
pub mod hl7;
pub mod schema;
pub mod sign_in;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use scr_db::{DbConnection, DbPool, PooledDb};

/// Migrations for SQLite stores.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// Migrations for PostgreSQL stores; same names as the SQLite ones.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A query failed (the database is down, a constraint was violated, ...).
    #[error("store database query failed")]
    Database {
        #[from]
        source: diesel::result::Error,
    },
    /// Pending migrations could not be applied.
    #[error("store migrations failed: {message}")]
    Migration { message: String },
    /// The store's URL is unusable or its first connection failed.
    #[error("could not open the store database")]
    Open {
        #[source]
        source: scr_db::DbError,
    },
    /// No connection could be checked out of the pool.
    #[error("could not get a store database connection")]
    Pool {
        #[source]
        source: r2d2::Error,
    },
    /// A row looked up by id does not exist.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The group commit this append was part of failed (the leader's error, as text).
    #[error("the audit batch this event was in could not be committed: {detail}")]
    AuditBatch { detail: String },
    /// A stored value cannot be read back (e.g. a resource column that is not JSON).
    #[error("stored {entity} {id} cannot be read: {detail}")]
    Corrupt {
        entity: &'static str,
        id: String,
        detail: String,
    },
}

impl StoreError {
    /// True for the conflicts a concurrent writer can cause (a unique key inserted by another
    /// transaction first, a serialization failure): the transaction can simply be run again.
    pub fn is_retryable_conflict(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            StoreError::Database {
                source: Error::DatabaseError(
                    DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure,
                    _
                )
            }
        )
    }
}

impl StoreError {
    /// SQLite's "database is locked": another connection holds the write lock and this
    /// transaction, begun as a reader, could not upgrade. Running it again succeeds.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Database { source: diesel::result::Error::DatabaseError(_, info) } if info.message().contains("database is locked"))
    }
}

/// The longest [`retry_busy`] keeps retrying a busy SQLite store.
pub const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a write transaction, again if SQLite reports the database busy: its deferred
/// transactions cannot wait for the write lock once they have read, so two writers (the MLLP
/// feed and the audit trail) would otherwise fail each other now and then. Backs off 1 ms,
/// 2 ms, ... for at most [`BUSY_RETRY_FOR`], then gives the error.
pub fn retry_busy<T>(mut work: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    // Bounded in time, not only in attempts: each attempt may itself wait the busy timeout, so
    // sixty of them held an HL7 sender or a request for minutes (issue 14).
    let started = std::time::Instant::now();
    let mut attempt = 0u64;
    loop {
        match work() {
            Err(e) if e.is_busy() && attempt < 60 && started.elapsed() < BUSY_RETRY_FOR => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(attempt.min(50)));
            }
            other => return other,
        }
    }
}

/// Applies pending migrations, picking the folder for the connection's backend.
pub fn run_migrations(conn: &mut DbConnection) -> Result<(), StoreError> {
    let applied = match conn {
        DbConnection::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    }
    .map_err(|e| StoreError::Migration {
        message: e.to_string(),
    })?;
    if applied > 0 {
        log::info!("store: applied {applied} migration(s)");
    }
    Ok(())
}

/// The facade's own database.
#[derive(Clone)]
pub struct Store {
    pool: DbPool,
    /// Audit appends of this process, committed in groups so the hash chain never forks.
    audit_queue: std::sync::Arc<audit::GroupCommit>,
}

impl Store {
    /// Opens a checked pool for `url` (`sqlite://path`, a bare path or `postgres://…`) and applies
    /// pending migrations.
    pub fn open(url: &str, pool_size: u32) -> Result<Store, StoreError> {
        Store::open_with(
            url,
            scr_db::PoolOptions {
                max_size: pool_size,
                ..scr_db::PoolOptions::default()
            },
        )
    }

    /// [`Store::open`] with the pool's timeouts: the server bounds every wait on its store
    /// (statement, lock, pool checkout), so a locked or slow table answers 503, never a hang.
    pub fn open_with(url: &str, options: scr_db::PoolOptions) -> Result<Store, StoreError> {
        if options.statement_timeout.is_none() && options.lock_timeout.is_none() {
            let pool = scr_db::open_pool_checked("store", url, &options)
                .map_err(|source| StoreError::Open { source })?;
            run_migrations(&mut *connection(&pool)?)?;
            return Ok(Store {
                pool,
                audit_queue: Default::default(),
            });
        }
        {
            // Migrations run on a connection of their own, without the statement timeout
            // (building an index on a region's audit trail takes longer than a request may).
            let untimed = scr_db::PoolOptions {
                max_size: 1,
                statement_timeout: None,
                lock_timeout: None,
                ..options.clone()
            };
            let pool = scr_db::open_pool_checked("store", url, &untimed)
                .map_err(|source| StoreError::Open { source })?;
            let mut conn = pool.get().map_err(|source| StoreError::Pool { source })?;
            run_migrations(&mut conn)?;
        }
        let pool = scr_db::open_pool_checked("store", url, &options)
            .map_err(|source| StoreError::Open { source })?;
        Ok(Store {
            pool,
            audit_queue: Default::default(),
        })
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Checks a connection out of the pool.
    pub fn conn(&self) -> Result<PooledDb, StoreError> {
        connection(&self.pool)
    }
}

/// An error and its sources, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks a connection out of `pool`, as a [`StoreError`].
pub fn connection(pool: &DbPool) -> Result<PooledDb, StoreError> {
    pool.get().map_err(|source| StoreError::Pool { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn open_applies_migrations_once_on_every_backend() -> TestResult {
        for db in test_databases("store_open")? {
            let store = Store::open(&db.url, 2)?;
            // Opening again finds nothing pending.
            let again = Store::open(&db.url, 2)?;
            let mut conn = again.conn()?;
            run_migrations(&mut conn)?;
            assert_eq!(hl7::count_messages(&mut conn)?, 0, "{}", db.label);
            drop(store);
        }
        Ok(())
    }

    #[test]
    fn an_unsupported_url_is_an_open_error() {
        assert!(matches!(
            Store::open("mysql://h/db", 1),
            Err(StoreError::Open { .. })
        ));
    }

    #[test]
    fn unique_violations_are_retryable_but_other_errors_are_not() {
        use diesel::result::{DatabaseErrorKind, Error};
        let unique = StoreError::from(Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(String::from("dup")),
        ));
        assert!(unique.is_retryable_conflict());
        assert!(!StoreError::from(Error::NotFound).is_retryable_conflict());
    }
}
