//! Batched multi-row `INSERT` statements built as SQL text and run with `batch_execute`, so the
//! same code runs on SQLite and PostgreSQL without bind-parameter limits, and tens of thousands
//! of rows go in per statement round trip.

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use scr_db::DbConnection;

use crate::SynthError;

/// Flush every table once this much SQL text is buffered.
const FLUSH_BYTES: usize = 2 * 1024 * 1024;

/// One value of a row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum V<'a> {
    T(&'a str),
    OptT(Option<&'a str>),
    I(i64),
    R(f64),
    OptR(Option<f64>),
    Null,
}

/// Where the statements go: a database, or (for tests) a string.
pub(crate) enum Target<'c> {
    Db(&'c mut DbConnection),
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "only the tests capture SQL text")
    )]
    Capture(&'c mut String),
}

/// Buffers rows for several tables and writes them parents first, so foreign keys always hold.
pub(crate) struct Inserter<'c> {
    target: Target<'c>,
    tables: Vec<Table>,
    buffered: usize,
    pub rows: usize,
}

struct Table {
    head: String,
    sql: String,
    pending: usize,
}

impl<'c> Inserter<'c> {
    /// `tables`: (name, comma-separated columns), parents before children.
    pub(crate) fn new(target: Target<'c>, tables: &[(&str, &str)]) -> Inserter<'c> {
        let tables = tables
            .iter()
            .map(|(name, columns)| Table {
                head: format!("INSERT INTO {name} ({columns}) VALUES "),
                sql: String::new(),
                pending: 0,
            })
            .collect();
        Inserter {
            target,
            tables,
            buffered: 0,
            rows: 0,
        }
    }

    /// Adds a row to table number `table` (its position in `new`).
    pub(crate) fn row(&mut self, table: usize, values: &[V<'_>]) {
        let t = &mut self.tables[table];
        let before = t.sql.len();
        if t.pending == 0 {
            t.sql.push_str(&t.head);
        } else {
            t.sql.push(',');
        }
        t.sql.push('(');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                t.sql.push(',');
            }
            push_value(&mut t.sql, *v);
        }
        t.sql.push(')');
        t.pending += 1;
        self.rows += 1;
        self.buffered += t.sql.len() - before;
    }

    /// Writes everything buffered if enough has built up. Call between whole patients.
    pub(crate) fn maybe_flush(&mut self) -> Result<(), SynthError> {
        if self.buffered >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), SynthError> {
        for t in &mut self.tables {
            if t.pending == 0 {
                continue;
            }
            t.sql.push(';');
            match &mut self.target {
                Target::Db(conn) => {
                    conn.batch_execute(&t.sql)
                        .map_err(|source| SynthError::Database {
                            step: "inserting rows",
                            source,
                        })?
                }
                Target::Capture(text) => {
                    text.push_str(&t.sql);
                    text.push('\n');
                }
            }
            t.sql.clear();
            t.pending = 0;
        }
        self.buffered = 0;
        Ok(())
    }
}

fn push_value(sql: &mut String, v: V<'_>) {
    use std::fmt::Write;
    match v {
        V::T(s) | V::OptT(Some(s)) => {
            sql.push('\'');
            if s.contains('\'') {
                sql.push_str(&s.replace('\'', "''"));
            } else {
                sql.push_str(s);
            }
            sql.push('\'');
        }
        V::I(i) => {
            let _ = write!(sql, "{i}");
        }
        V::R(r) | V::OptR(Some(r)) => {
            debug_assert!(r.is_finite());
            // `{:?}` always writes a decimal point or exponent, so the literal is a REAL.
            let _ = write!(sql, "{r:?}");
        }
        V::OptT(None) | V::OptR(None) | V::Null => sql.push_str("NULL"),
    }
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Which of `tables` already exist in the connection's database (current schema on PostgreSQL).
pub(crate) fn existing_tables(
    conn: &mut DbConnection,
    tables: &[&str],
) -> Result<Vec<String>, SynthError> {
    let list = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = match conn {
        DbConnection::Sqlite(c) => {
            diesel::sql_query(format!("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({list})")).load::<NameRow>(c)
        }
        DbConnection::Postgres(c) => diesel::sql_query(format!(
            "SELECT tablename::text AS name FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename IN ({list})"
        ))
        .load::<NameRow>(c),
    }
    .map_err(|source| SynthError::Database { step: "checking for existing tables", source })?;
    let mut names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
    names.sort();
    Ok(names)
}

/// Runs the replica DDL, refusing to touch a database that already has any of its tables.
pub(crate) fn create_schema(
    conn: &mut DbConnection,
    replica: &'static str,
    ddl: &str,
    tables: &[&str],
) -> Result<(), SynthError> {
    let existing = existing_tables(conn, tables)?;
    if !existing.is_empty() {
        return Err(SynthError::AlreadyExists {
            replica,
            tables: existing.join(", "),
        });
    }
    conn.batch_execute(ddl)
        .map_err(|source| SynthError::Database {
            step: "creating the replica schema",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_escaped() {
        let mut s = String::new();
        for v in [
            V::T("O'Brien"),
            V::OptT(None),
            V::I(3),
            V::R(72.5),
            V::R(142.0),
            V::OptR(Some(0.1)),
        ] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "'O''Brien' NULL 3 72.5 142.0 0.1 ");
    }
}
