//! The few statements that differ between SQLite and PostgreSQL, each in one small function.
//! The connection enum cannot express `ON CONFLICT` or the last inserted id, so these match on
//! the backend and run the same diesel query on the native connection. Inside a transaction
//! opened on the enum this is the same transaction: the enum's transaction manager delegates to
//! the native connection's.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::hl7::NewMessage;
use crate::schema::hl7_message;
use crate::DbConnection;

/// Runs one expression against the native connection of either backend.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConnection::Postgres($c) => $body,
            DbConnection::Sqlite($c) => $body,
        }
    };
}

/// `INSERT … ON CONFLICT DO NOTHING` for a message log row. Returns the number of rows inserted:
/// 0 when a row with the same unique key (an applied copy of the same facility and control id)
/// exists. On PostgreSQL a concurrent insert of the same key waits for the other transaction and
/// then inserts nothing if it committed.
pub fn insert_message_or_ignore(
    conn: &mut DbConnection,
    row: &NewMessage<'_>,
) -> QueryResult<usize> {
    per_backend!(conn, |c| diesel::insert_into(hl7_message::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))
}

/// The id the last `INSERT` on this connection assigned (`lastval()` on PostgreSQL, whose ids
/// come from `BIGSERIAL` sequences; `last_insert_rowid()` on SQLite). Call it right after the
/// insert, in the same transaction.
pub fn last_insert_id(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Postgres(c) => diesel::select(sql::<BigInt>("lastval()")).get_result(c),
        DbConnection::Sqlite(c) => {
            diesel::select(sql::<BigInt>("last_insert_rowid()")).get_result(c)
        }
    }
}
