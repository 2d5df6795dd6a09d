//! The state of SMART sign-ins (`sign_in_state`), durable so that a restart or a second
//! instance on the same store never loses a step nor revives what was spent or revoked.
//!
//! Each row is one value of a [`Kind`] under the SHA-256 of the random id the user agent or
//! app holds ([`hashed`]); the caller passes the id itself and never sees the hash. Values are
//! opaque text (the sign-in crate's JSON). Single use is decided by the `DELETE`: of two
//! concurrent takers of one id only the one whose delete removed the row gets the value.

use diesel::prelude::*;

use crate::schema::sign_in_state;
use crate::{DbConnection, StoreError};

/// What a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sign-in on its way to the login provider (its `state`).
    Login,
    /// A signed-in user awaiting a role or patient choice.
    Choice,
    /// An authorization code.
    Code,
    /// An EHR launch registered by a host system.
    Launch,
    /// The role a user confirmed, by provider and user.
    Role,
    /// A refresh token family revoked after a reuse.
    Revoked,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Choice => "choice",
            Kind::Code => "code",
            Kind::Launch => "launch",
            Kind::Role => "role",
            Kind::Revoked => "revoked",
        }
    }
}

/// The key a value is stored under: the hex SHA-256 of the id, so that a copy of the table
/// holds no live code, state or launch.
pub fn hashed(id: &str) -> String {
    openssl::sha::sha256(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a value was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Kept,
    /// `client` already holds `per_client` live values of this kind.
    ClientFull,
}

/// Keeps `body` under `id` until `expires_at`, unless `client` already holds `per_client` live
/// values of this kind. Expired rows of every kind are deleted first. An existing value under
/// the same id is replaced (roles, revocations).
#[expect(
    clippy::too_many_arguments,
    reason = "one row's columns, the cap and the clock"
)]
pub fn put(
    conn: &mut DbConnection,
    kind: Kind,
    id: &str,
    client: &str,
    body: &str,
    expires_at: i64,
    now: i64,
    per_client: Option<i64>,
) -> Result<Put, StoreError> {
    let key = hashed(id);
    conn.transaction(|conn| {
        diesel::delete(sign_in_state::table.filter(sign_in_state::expires_at.le(now)))
            .execute(conn)?;
        if let Some(cap) = per_client {
            let held: i64 = sign_in_state::table
                .filter(sign_in_state::kind.eq(kind.as_str()))
                .filter(sign_in_state::client.eq(client))
                .count()
                .get_result(conn)?;
            if held >= cap {
                return Ok(Put::ClientFull);
            }
        }
        diesel::delete(
            sign_in_state::table
                .filter(sign_in_state::kind.eq(kind.as_str()))
                .filter(sign_in_state::id.eq(&key)),
        )
        .execute(conn)?;
        diesel::insert_into(sign_in_state::table)
            .values((
                sign_in_state::kind.eq(kind.as_str()),
                sign_in_state::id.eq(&key),
                sign_in_state::client.eq(client),
                sign_in_state::body.eq(body),
                sign_in_state::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
        Ok(Put::Kept)
    })
}

/// The value under `id`, if it has not expired; it stays (roles, revocations).
pub fn get(
    conn: &mut DbConnection,
    kind: Kind,
    id: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    Ok(sign_in_state::table
        .filter(sign_in_state::kind.eq(kind.as_str()))
        .filter(sign_in_state::id.eq(hashed(id)))
        .filter(sign_in_state::expires_at.gt(now))
        .select(sign_in_state::body)
        .first(conn)
        .optional()?)
}

/// Takes the value under `id` out (single use), if it has not expired. An expired value is
/// removed too.
pub fn take(
    conn: &mut DbConnection,
    kind: Kind,
    id: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let key = hashed(id);
    let found: Option<(String, i64)> = sign_in_state::table
        .filter(sign_in_state::kind.eq(kind.as_str()))
        .filter(sign_in_state::id.eq(&key))
        .select((sign_in_state::body, sign_in_state::expires_at))
        .first(conn)
        .optional()?;
    let Some((body, expires_at)) = found else {
        return Ok(None);
    };
    let removed = diesel::delete(
        sign_in_state::table
            .filter(sign_in_state::kind.eq(kind.as_str()))
            .filter(sign_in_state::id.eq(&key)),
    )
    .execute(conn)?;
    Ok((removed == 1 && expires_at > now).then_some(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;
    use crate::Store;

    #[test]
    fn a_value_is_taken_once_and_never_after_its_expiry() -> Result<(), Box<dyn std::error::Error>>
    {
        for db in test_databases("sign_in")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let c = &mut conn;
            assert_eq!(
                put(c, Kind::Code, "abc", "", "v", 200, 100, None)?,
                Put::Kept
            );
            assert_eq!(get(c, Kind::Launch, "abc", 100)?, None, "{}", db.label);
            assert_eq!(take(c, Kind::Code, "abc", 150)?.as_deref(), Some("v"));
            assert_eq!(take(c, Kind::Code, "abc", 150)?, None, "{}", db.label);
            put(c, Kind::Code, "old", "", "v", 200, 100, None)?;
            assert_eq!(take(c, Kind::Code, "old", 200)?, None, "{}", db.label);
            // The table holds the hash, never the id.
            let ids: Vec<String> = sign_in_state::table.select(sign_in_state::id).load(c)?;
            assert!(ids.iter().all(|i| i != "abc" && i != "old"), "{ids:?}");
        }
        Ok(())
    }

    #[test]
    fn one_client_cannot_hold_more_than_its_cap_and_others_are_unaffected(
    ) -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("sign_in_cap")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let c = &mut conn;
            for i in 0..3 {
                let id = format!("s{i}");
                assert_eq!(
                    put(c, Kind::Login, &id, "192.0.2.1", "v", 700, 100, Some(3))?,
                    Put::Kept
                );
            }
            let over = put(c, Kind::Login, "s3", "192.0.2.1", "v", 700, 100, Some(3))?;
            assert_eq!(over, Put::ClientFull, "{}", db.label);
            let other = put(c, Kind::Login, "t0", "192.0.2.2", "v", 700, 100, Some(3))?;
            assert_eq!(other, Put::Kept, "{}", db.label);
            // Once they expire the client may start again.
            let later = put(c, Kind::Login, "s4", "192.0.2.1", "v", 1_400, 700, Some(3))?;
            assert_eq!(later, Put::Kept, "{}", db.label);
        }
        Ok(())
    }
}
