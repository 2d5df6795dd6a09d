//! Alerts (`Flag`) written through the facade: versioned, every version kept (R-WRITE-3). An
//! update names the version it replaces; if another update got there first, it is refused and
//! loses nothing (the caller reads the new version and tries again).

use diesel::prelude::*;

use crate::dialect::last_insert_id;
use crate::schema::{flag, flag_version};
use crate::{retry_busy, DbConnection, StoreError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = flag)]
pub struct FlagRow {
    pub id: i64,
    pub nhs_number: String,
    pub author_kind: String,
    pub author_org: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = flag_version)]
pub struct FlagVersionRow {
    pub flag_id: i64,
    pub version: i32,
    pub author_user: String,
    pub author_org: String,
    pub recorded_at: String,
    pub resource: String,
}

/// Who writes a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author<'a> {
    pub kind: &'a str,
    pub user: &'a str,
    pub org: &'a str,
}

/// Why an update was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlagWriteError {
    #[error("flag {id} does not exist")]
    NotFound { id: i64 },
    #[error("flag {id} is at version {current}, not {expected}")]
    VersionConflict {
        id: i64,
        expected: i32,
        current: i32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a flag at version 1; returns its id.
pub fn create_flag(
    conn: &mut DbConnection,
    nhs_number: &str,
    author: &Author,
    recorded_at: &str,
    resource: &str,
) -> Result<i64, StoreError> {
    retry_busy(|| {
        conn.transaction(|conn| {
            diesel::insert_into(flag::table)
                .values((
                    flag::nhs_number.eq(nhs_number),
                    flag::author_kind.eq(author.kind),
                    flag::author_org.eq(author.org),
                ))
                .execute(conn)?;
            let id = last_insert_id(conn)?;
            insert_version(conn, id, 1, author, recorded_at, resource)?;
            Ok(id)
        })
        .map_err(|source: diesel::result::Error| StoreError::Database { source })
    })
}

fn insert_version(
    conn: &mut DbConnection,
    id: i64,
    version: i32,
    author: &Author,
    recorded_at: &str,
    resource: &str,
) -> QueryResult<usize> {
    diesel::insert_into(flag_version::table)
        .values((
            flag_version::flag_id.eq(id),
            flag_version::version.eq(version),
            flag_version::author_user.eq(author.user),
            flag_version::author_org.eq(author.org),
            flag_version::recorded_at.eq(recorded_at),
            flag_version::resource.eq(resource),
        ))
        .execute(conn)
}

/// Stores version `expected + 1` if `expected` is the current version.
pub fn update_flag(
    conn: &mut DbConnection,
    id: i64,
    expected: i32,
    author: &Author,
    recorded_at: &str,
    resource: &str,
) -> Result<i32, FlagWriteError> {
    let current = current_version(conn, id)?.ok_or(FlagWriteError::NotFound { id })?;
    if current.version != expected {
        return Err(FlagWriteError::VersionConflict {
            id,
            expected,
            current: current.version,
        });
    }
    match insert_version(conn, id, expected + 1, author, recorded_at, resource) {
        Ok(_) => Ok(expected + 1),
        // Another update of the same version committed first: the key refuses the second.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {
            let now = current_version(conn, id)?
                .map(|v| v.version)
                .unwrap_or(expected);
            Err(FlagWriteError::VersionConflict {
                id,
                expected,
                current: now,
            })
        }
        Err(source) => Err(FlagWriteError::Store(StoreError::Database { source })),
    }
}

pub fn flag_by_id(conn: &mut DbConnection, id: i64) -> Result<Option<FlagRow>, StoreError> {
    Ok(flag::table
        .find(id)
        .select(FlagRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn current_version(
    conn: &mut DbConnection,
    id: i64,
) -> Result<Option<FlagVersionRow>, StoreError> {
    Ok(flag_version::table
        .filter(flag_version::flag_id.eq(id))
        .order(flag_version::version.desc())
        .select(FlagVersionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every version of one flag, newest first.
pub fn history(conn: &mut DbConnection, id: i64) -> Result<Vec<FlagVersionRow>, StoreError> {
    Ok(flag_version::table
        .filter(flag_version::flag_id.eq(id))
        .order(flag_version::version.desc())
        .select(FlagVersionRow::as_select())
        .load(conn)?)
}

/// The current version of every flag about a patient, with the flag's row.
pub fn current_flags_for(
    conn: &mut DbConnection,
    nhs_number: &str,
) -> Result<Vec<(FlagRow, FlagVersionRow)>, StoreError> {
    let flags: Vec<FlagRow> = flag::table
        .filter(flag::nhs_number.eq(nhs_number))
        .select(FlagRow::as_select())
        .load(conn)?;
    let mut out = Vec::with_capacity(flags.len());
    for f in flags {
        if let Some(v) = current_version(conn, f.id)? {
            out.push((f, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;
    use crate::Store;

    #[test]
    fn r_write_3_versions_are_kept_and_a_stale_update_is_refused(
    ) -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("flags")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let a = Author {
                kind: "staff",
                user: "u1",
                org: "M85001",
            };
            let id = create_flag(
                &mut conn,
                "9990000018",
                &a,
                "2026-11-25T10:00:00Z",
                "{\"v\":1}",
            )?;
            assert_eq!(
                update_flag(&mut conn, id, 1, &a, "2026-11-25T10:01:00Z", "{\"v\":2}")?,
                2
            );
            assert!(
                matches!(
                    update_flag(&mut conn, id, 1, &a, "2026-11-25T10:02:00Z", "{\"v\":3}"),
                    Err(FlagWriteError::VersionConflict { current: 2, .. })
                ),
                "{}",
                db.label
            );
            assert_eq!(history(&mut conn, id)?.len(), 2);
            assert_eq!(
                current_version(&mut conn, id)?.unwrap().resource,
                "{\"v\":2}"
            );
            assert!(matches!(
                update_flag(&mut conn, 999, 1, &a, "x", "{}"),
                Err(FlagWriteError::NotFound { .. })
            ));
        }
        Ok(())
    }
}
