//! Objections and consents registered in the shared care record as FHIR `Consent` (R-OBJ-1). A
//! statement is never changed: withdrawing an objection is a newer statement (R-OBJ-5).

use diesel::prelude::*;

use crate::dialect::last_insert_id;
use crate::schema::consent_statement;
use crate::{DbConnection, StoreError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = consent_statement)]
pub struct ConsentRow {
    pub id: i64,
    pub nhs_number: String,
    pub objects: i32,
    pub effective: String,
    pub recorded_at: String,
    pub org: String,
    pub user_id: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent<'a> {
    pub nhs_number: &'a str,
    pub objects: bool,
    pub effective: &'a str,
    pub recorded_at: &'a str,
    pub org: &'a str,
    pub user_id: &'a str,
    /// The Consent JSON without `id` (the id is the row id, known once stored).
    pub resource: &'a str,
}

/// Stores a statement and returns its id.
pub fn insert_consent(conn: &mut DbConnection, c: &NewConsent) -> Result<i64, StoreError> {
    conn.transaction(|conn| {
        diesel::insert_into(consent_statement::table)
            .values((
                consent_statement::nhs_number.eq(c.nhs_number),
                consent_statement::objects.eq(i32::from(c.objects)),
                consent_statement::effective.eq(c.effective),
                consent_statement::recorded_at.eq(c.recorded_at),
                consent_statement::org.eq(c.org),
                consent_statement::user_id.eq(c.user_id),
                consent_statement::resource.eq(c.resource),
            ))
            .execute(conn)?;
        last_insert_id(conn)
    })
    .map_err(|source| StoreError::Database { source })
}

/// Every statement about one patient, oldest first.
pub fn consents_for(
    conn: &mut DbConnection,
    nhs_number: &str,
) -> Result<Vec<ConsentRow>, StoreError> {
    Ok(consent_statement::table
        .filter(consent_statement::nhs_number.eq(nhs_number))
        .order(consent_statement::id.asc())
        .select(ConsentRow::as_select())
        .load(conn)?)
}

/// One statement by id.
pub fn consent_by_id(conn: &mut DbConnection, id: i64) -> Result<Option<ConsentRow>, StoreError> {
    Ok(consent_statement::table
        .find(id)
        .select(ConsentRow::as_select())
        .first(conn)
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;
    use crate::Store;

    #[test]
    fn statements_are_kept_in_order_with_their_ids() -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("consent")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let base = NewConsent {
                nhs_number: "9990000018",
                objects: true,
                effective: "2026-11-01T10:00:00Z",
                recorded_at: "2026-11-01T10:00:00Z",
                org: "M85001",
                user_id: "u",
                resource: "{}",
            };
            let first = insert_consent(&mut conn, &base)?;
            let second = insert_consent(
                &mut conn,
                &NewConsent {
                    objects: false,
                    ..base.clone()
                },
            )?;
            assert!(second > first, "{}", db.label);
            let all = consents_for(&mut conn, "9990000018")?;
            assert_eq!(
                all.iter().map(|c| c.objects).collect::<Vec<_>>(),
                vec![1, 0]
            );
            assert_eq!(consent_by_id(&mut conn, first)?.map(|c| c.id), Some(first));
        }
        Ok(())
    }
}
