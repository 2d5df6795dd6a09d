//! Throw-away databases for tests of this crate and the crates built on it: always a fresh SQLite
//! file, and a freshly created PostgreSQL database when `TEST_POSTGRES_URL` is set (the URL of a
//! server and a database to connect to while creating and dropping the test database). Both are
//! removed when the [`TestDb`] is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::{Connection, RunQueryDsl};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One throw-away database.
pub struct TestDb {
    /// A URL `Store::open` accepts.
    pub url: String,
    /// `sqlite` or `postgres`, for assertion messages.
    pub label: &'static str,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, database: String },
}

/// A fresh SQLite file, plus a fresh PostgreSQL database when `TEST_POSTGRES_URL` is set.
/// `prefix` (letters, digits, `_`) names the test in file and database names.
pub fn test_databases(prefix: &str) -> Result<Vec<TestDb>, Box<dyn std::error::Error>> {
    let mut dbs = vec![sqlite_database(prefix)];
    if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
        if !url.trim().is_empty() {
            dbs.push(postgres_database(prefix, url.trim())?);
        }
    }
    Ok(dbs)
}

fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let clean: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_lowercase();
    format!("scr_{clean}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh SQLite file in the temporary directory.
pub fn sqlite_database(prefix: &str) -> TestDb {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name(prefix)));
    TestDb {
        url: format!("sqlite://{}", path.display()),
        label: "sqlite",
        cleanup: Cleanup::File(path),
    }
}

/// A fresh PostgreSQL database created through `admin_url`.
pub fn postgres_database(
    prefix: &str,
    admin_url: &str,
) -> Result<TestDb, Box<dyn std::error::Error>> {
    let database = unique_name(prefix);
    let mut admin = diesel::PgConnection::establish(admin_url)?;
    diesel::sql_query(format!("CREATE DATABASE {database}")).execute(&mut admin)?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let server = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    Ok(TestDb {
        url: format!("{server}/{database}{query}"),
        label: "postgres",
        cleanup: Cleanup::Postgres {
            admin_url: admin_url.to_owned(),
            database,
        },
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            }
            Cleanup::Postgres {
                admin_url,
                database,
            } => {
                let dropped = diesel::PgConnection::establish(admin_url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        ))
                        .execute(&mut c)
                        .map_err(|e| e.to_string())
                    });
                if let Err(e) = dropped {
                    eprintln!("could not drop test database {database}: {e}");
                }
            }
        }
    }
}
