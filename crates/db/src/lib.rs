//! Database connections for every database the facade touches: the provider replicas it reads
//! (GP, social care) and its own store. One connection enum over SQLite and PostgreSQL, chosen
//! from the URL, so every query is written once for both backends.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, Pool, PooledConnection, R2D2Connection};
use diesel::Connection;

/// A connection to either backend. Which one a URL opens is decided by its scheme
/// ([`classify_url`], in [`Manager`]), never by trying each in turn.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

diesel::define_sql_function! {
    /// SQL `lower()`: case-insensitive name search the same way on SQLite and PostgreSQL
    /// (SQLite's LIKE ignores ASCII case, PostgreSQL's does not).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A `LIKE` pattern matching values that start with `prefix` taken literally: `%`, `_` and `\\`
/// in it are escaped. Use it with `.escape('\\')`, so a search for `%` is not a wildcard that
/// sweeps the region.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// The cheapest round trip that proves a database answers: `SELECT 1` on PostgreSQL; on SQLite
/// a read of the schema, since `SELECT 1` touches no file and would pass with the file locked.
pub fn ping(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    let sql = match conn {
        DbConnection::Postgres(_) => "SELECT 1",
        DbConnection::Sqlite(_) => "SELECT count(*) FROM sqlite_master",
    };
    diesel::RunQueryDsl::execute(diesel::sql_query(sql), conn).map(drop)
}

pub type DbPool = Pool<Manager>;
pub type PooledDb = PooledConnection<Manager>;

/// The pool's connection manager: it opens the backend the URL's scheme names and only that one.
/// (diesel's own manager calls `DbConnection::establish`, which tries PostgreSQL and then SQLite:
/// a PostgreSQL server that refused a connection was reported as SQLite's "unable to open
/// database file" for a file named after the URL, and the real cause was lost.)
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
    url: String,
}

impl Manager {
    /// `url` as [`classify_url`] returns it for `backend`.
    pub fn new(backend: Backend, url: String) -> Self {
        Manager { backend, url }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match self.backend {
            Backend::Postgres => {
                diesel::PgConnection::establish(&self.url).map(DbConnection::Postgres)
            }
            Backend::Sqlite => {
                diesel::SqliteConnection::establish(&self.url).map(DbConnection::Sqlite)
            }
        }
        .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("database URL for {name} is empty")]
    EmptyUrl { name: String },
    #[error("database URL for {name} names an unsupported backend ({scheme}); use sqlite:// or postgres://")]
    UnsupportedBackend { name: String, scheme: String },
    #[error("could not open the {name} database pool")]
    Pool {
        name: String,
        #[source]
        source: r2d2::Error,
    },
}

/// Which backend a URL names. `sqlite://path`, `sqlite:path` or a bare path are SQLite;
/// `postgres://` and `postgresql://` are PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Normalises a configured URL into what diesel expects, and names its backend.
pub fn classify_url(name: &str, url: &str) -> Result<(Backend, String), DbError> {
    if url.trim().is_empty() {
        return Err(DbError::EmptyUrl {
            name: name.to_owned(),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok((Backend::Sqlite, path.to_owned()));
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok((Backend::Sqlite, path.to_owned()));
    }
    match url.split_once("://") {
        Some((scheme, _)) => Err(DbError::UnsupportedBackend {
            name: name.to_owned(),
            scheme: scheme.to_owned(),
        }),
        None => Ok((Backend::Sqlite, url.to_owned())),
    }
}

/// Settings applied once per connection.
///
/// SQLite: WAL so readers never wait for the writer, foreign keys on, a busy timeout instead of
/// an immediate `SQLITE_BUSY` (the longest a statement waits for a lock), and full sync so an
/// acknowledged write survives a power cut.
///
/// PostgreSQL: `statement_timeout` (the server cancels a statement that runs longer, so a
/// query abandoned at its deadline does not keep running and keep its connection),
/// `lock_timeout` (a statement waiting for a lock gives up) and
/// `idle_in_transaction_session_timeout` (a transaction left open by a stuck client does not
/// hold its locks for ever). Every wait on the database is bounded (issue 14).
#[derive(Debug, Clone, Copy)]
struct Customizer {
    read_only: bool,
    busy_timeout: Duration,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128);
        let sql = match conn {
            DbConnection::Sqlite(_) => {
                let busy = ms(self.busy_timeout);
                if self.read_only {
                    format!("PRAGMA busy_timeout = {busy}; PRAGMA query_only = 1;")
                } else {
                    // The busy timeout first: switching to WAL waits for a lock like any
                    // statement (another connection's exclusive lock, or the last one closing
                    // and checkpointing); without it the new connection failed at once with
                    // "database is locked" and r2d2 logged an error and tried again later.
                    format!("PRAGMA busy_timeout = {busy}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
                }
            }
            DbConnection::Postgres(_) => {
                let mut sql = String::new();
                if let Some(t) = self.statement_timeout {
                    sql.push_str(&format!(
                        "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {};",
                        ms(t),
                        ms(t).saturating_mul(2)
                    ));
                }
                if let Some(t) = self.lock_timeout {
                    sql.push_str(&format!("SET lock_timeout = {};", ms(t)));
                }
                if self.read_only {
                    sql.push_str("SET default_transaction_read_only = on;");
                }
                sql
            }
        };
        if sql.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Options for one pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: u32,
    /// The longest a caller waits for a connection from the pool (a new one included).
    pub connect_timeout: Duration,
    /// Replicas the facade only reads are opened query-only.
    pub read_only: bool,
    /// SQLite: the longest a statement waits for another connection's lock.
    pub busy_timeout: Duration,
    /// PostgreSQL: the server cancels a statement running longer.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL: a statement waiting longer for a lock gives up.
    pub lock_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 8,
            connect_timeout: Duration::from_secs(5),
            read_only: false,
            busy_timeout: Duration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
        }
    }
}

/// Opens a pool for `url`. `name` is the configuration name, used in errors. The pool is built
/// lazily (`min_idle = 0`, `build_unchecked`) so that a replica that is down at start-up does not
/// stop the facade: requests then report that source as unavailable.
pub fn open_pool(name: &str, url: &str, options: &PoolOptions) -> Result<DbPool, DbError> {
    let (backend, diesel_url) = classify_url(name, url)?;
    let diesel_url = match backend {
        Backend::Postgres => with_network_bounds(&diesel_url, options.connect_timeout),
        Backend::Sqlite => diesel_url,
    };
    let manager = Manager::new(backend, diesel_url);
    Ok(Pool::builder()
        .max_size(options.max_size)
        .min_idle(Some(0))
        .connection_timeout(options.connect_timeout)
        .connection_customizer(Box::new(Customizer {
            read_only: options.read_only,
            busy_timeout: options.busy_timeout,
            statement_timeout: options.statement_timeout,
            lock_timeout: options.lock_timeout,
        }))
        .build_unchecked(manager))
}

/// libpq parameters that bound waits on the network, added unless the URL sets them: a
/// connection attempt gives up after `connect` (at least libpq's minimum of 2 s), so a server
/// that accepts TCP but never answers cannot hold the pool's connection threads for ever (found
/// by bench/soak.py: the GP replica's pool stayed exhausted after a stalled network until
/// restart); keepalives and `tcp_user_timeout` end a connection whose peer has vanished.
pub fn with_network_bounds(url: &str, connect: Duration) -> String {
    let seconds = connect.as_secs().max(2);
    let mut out = url.to_owned();
    for (key, value) in [
        ("connect_timeout", seconds.to_string()),
        ("keepalives", "1".to_owned()),
        ("keepalives_idle", "10".to_owned()),
        ("keepalives_interval", "5".to_owned()),
        ("keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", "30000".to_owned()),
    ] {
        let present = out
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.split('=').next() == Some(key)));
        if !present {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{key}={value}"));
        }
    }
    out
}

/// Opens a pool and checks one connection now: for the facade's own store, which must work.
pub fn open_pool_checked(name: &str, url: &str, options: &PoolOptions) -> Result<DbPool, DbError> {
    let pool = open_pool(name, url, options)?;
    pool.get().map_err(|source| DbError::Pool {
        name: name.to_owned(),
        source,
    })?;
    Ok(pool)
}

/// A SQLite file of its own in the temp directory, removed with its WAL, shared-memory and
/// journal files when dropped: for tests and tools that need a throwaway database.
#[derive(Debug)]
pub struct ScratchSqlite {
    path: String,
}

impl ScratchSqlite {
    /// `scr-{name}-{process}-{nanoseconds}.db`: unique per process and moment.
    pub fn new(name: &str) -> ScratchSqlite {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("scr-{name}-{}-{nanos}.db", std::process::id()));
        ScratchSqlite {
            path: path.to_string_lossy().into_owned(),
        }
    }

    /// The file's path, as a SQLite connection opens it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `sqlite://` and the path, as the configuration names a database.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path)
    }
}

impl Drop for ScratchSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operators must see why the store or a replica is unavailable: a PostgreSQL server that
    /// refuses is reported with PostgreSQL's own reason. (diesel's manager tried SQLite next and
    /// answered "Invalid connection url for multiconnection", the cause lost.)
    #[test]
    fn a_postgres_url_that_cannot_connect_reports_postgres_own_reason() {
        let (backend, url) = classify_url("t", "postgres://127.0.0.1:1/never").expect("postgres");
        let manager = Manager::new(backend, with_network_bounds(&url, Duration::from_secs(2)));
        let err = r2d2::ManageConnection::connect(&manager)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("127.0.0.1") && err.contains("port 1"), "{err}");
        assert!(!err.contains("multiconnection"), "{err}");
    }

    #[test]
    fn postgres_urls_get_network_bounds_unless_they_set_them() {
        let u = with_network_bounds("postgres://h/db", Duration::from_millis(1500));
        assert!(
            u.starts_with("postgres://h/db?connect_timeout=2&keepalives=1"),
            "{u}"
        );
        assert!(u.contains("&tcp_user_timeout=30000"), "{u}");
        let u = with_network_bounds(
            "postgres://h/db?sslmode=require&connect_timeout=9",
            Duration::from_secs(3),
        );
        assert!(
            u.starts_with("postgres://h/db?sslmode=require&connect_timeout=9&keepalives=1"),
            "{u}"
        );
        assert_eq!(u.matches("connect_timeout").count(), 1, "{u}");
    }

    #[test]
    fn urls_name_their_backend() -> Result<(), DbError> {
        assert_eq!(classify_url("t", "postgres://h/db")?.0, Backend::Postgres);
        assert_eq!(
            classify_url("t", "sqlite://data/gp.db")?,
            (Backend::Sqlite, "data/gp.db".into())
        );
        assert_eq!(classify_url("t", "data/gp.db")?.0, Backend::Sqlite);
        assert!(matches!(
            classify_url("t", "mysql://h/db"),
            Err(DbError::UnsupportedBackend { .. })
        ));
        assert!(matches!(
            classify_url("t", " "),
            Err(DbError::EmptyUrl { .. })
        ));
        Ok(())
    }

    /// Issue 14, every wait bounded and none cut short (seen in bench/soak.py as r2d2 errors
    /// "database is locked"): a new store connection's set-up waits for another connection's
    /// lock within its busy timeout instead of failing at once.
    #[test]
    fn a_new_sqlite_connections_set_up_waits_for_a_lock_within_its_busy_timeout() {
        let scratch = ScratchSqlite::new("db-busy");
        let path = scratch.path().to_owned();
        let mut holder = diesel::SqliteConnection::establish(&path).expect("open");
        holder
            .batch_execute("BEGIN EXCLUSIVE; CREATE TABLE t (x INTEGER);")
            .expect("an exclusive lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.batch_execute("COMMIT;").expect("commit");
        });
        let mut conn =
            DbConnection::Sqlite(diesel::SqliteConnection::establish(&path).expect("open"));
        let customizer = Customizer {
            read_only: false,
            busy_timeout: Duration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
        };
        let set_up = customizer.on_acquire(&mut conn).map_err(|e| e.to_string());
        release.join().expect("the holder");
        drop(conn);
        assert_eq!(set_up, Ok(()));
    }
}
