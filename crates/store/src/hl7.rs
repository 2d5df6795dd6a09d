//! Rows and queries of the HL7 v2 feed tables. The feed crate (`scr-source-hl7v2`) decides what
//! a message means; this module only reads and writes rows. Every function takes a connection so
//! that a caller can run several in one transaction. A query error is always returned, never
//! turned into "absent": `Option` results mean the row does not exist.

use diesel::prelude::*;

use crate::dialect;
use crate::schema::{
    hl7_allergy, hl7_medication, hl7_message, hl7_observation, hl7_patient, hl7_visit,
};
use crate::{DbConnection, StoreError};

// ---------------------------------------------------------------------------------------------
// Message log and quarantine

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_message)]
pub struct MessageRow {
    pub id: i64,
    /// MSH-4 (empty when the message could not be parsed).
    pub facility: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-9 as `ADT^A01`.
    pub message_type: String,
    /// MSH-7 as an ISO instant.
    pub message_time: Option<String>,
    pub received_at: String,
    /// `AA`, `AE` or `AR`.
    pub ack_code: String,
    /// 1 for the one copy of (facility, control id) whose effects were applied.
    pub applied: i32,
    /// A short machine-readable cause for AE/AR (`nhs-number`, `unknown-facility`, ...).
    pub error_kind: Option<String>,
    pub reason: Option<String>,
    /// The message as received, for replay.
    pub raw: String,
    /// 1 + the number of replays.
    pub attempts: i32,
    pub last_attempt_at: Option<String>,
    /// Set when a quarantined message was later applied (replayed or resent).
    pub resolved_at: Option<String>,
    /// The MLLP connection it came over: the client certificate's name or the peer address
    /// (`None` for files loaded by an operator).
    pub peer: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = hl7_message)]
pub struct NewMessage<'a> {
    pub facility: &'a str,
    pub control_id: &'a str,
    pub message_type: &'a str,
    pub message_time: Option<&'a str>,
    pub received_at: &'a str,
    pub ack_code: &'a str,
    pub applied: i32,
    pub error_kind: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub raw: &'a str,
    pub attempts: i32,
    pub peer: Option<&'a str>,
}

/// Logs the applied copy of a message. Returns its id, or `None` when a copy with the same
/// facility and control id was applied before (a duplicate: nothing is inserted).
pub fn insert_applied_message(
    conn: &mut DbConnection,
    row: &NewMessage<'_>,
) -> QueryResult<Option<i64>> {
    debug_assert_eq!(row.applied, 1);
    match dialect::insert_message_or_ignore(conn, row)? {
        0 => Ok(None),
        _ => dialect::last_insert_id(conn).map(Some),
    }
}

/// Logs a message that is not applied (a duplicate, or quarantined AE/AR). Returns its id.
pub fn insert_message(conn: &mut DbConnection, row: &NewMessage<'_>) -> QueryResult<i64> {
    diesel::insert_into(hl7_message::table)
        .values(row)
        .execute(conn)?;
    dialect::last_insert_id(conn)
}

/// One logged message by id.
pub fn message_by_id(conn: &mut DbConnection, id: i64) -> Result<MessageRow, StoreError> {
    hl7_message::table
        .find(id)
        .select(MessageRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            entity: "HL7 message",
            id: id.to_string(),
        })
}

/// The quarantine: AE/AR messages not yet resolved, oldest first.
pub fn quarantined_messages(conn: &mut DbConnection) -> QueryResult<Vec<MessageRow>> {
    hl7_message::table
        .filter(hl7_message::ack_code.ne("AA"))
        .filter(hl7_message::resolved_at.is_null())
        .order(hl7_message::id.asc())
        .select(MessageRow::as_select())
        .load(conn)
}

/// How many messages the quarantine holds (AE/AR, not yet resolved): the operators' gauge.
pub fn count_all_quarantined(conn: &mut DbConnection) -> QueryResult<i64> {
    hl7_message::table
        .filter(hl7_message::ack_code.ne("AA"))
        .filter(hl7_message::resolved_at.is_null())
        .count()
        .get_result(conn)
}

/// Marks one quarantined message resolved (it has now been applied).
pub fn resolve_message(conn: &mut DbConnection, id: i64, at: &str) -> QueryResult<usize> {
    diesel::update(
        hl7_message::table
            .find(id)
            .filter(hl7_message::resolved_at.is_null()),
    )
    .set(hl7_message::resolved_at.eq(at))
    .execute(conn)
}

/// Marks every unresolved quarantined copy of (facility, control id) resolved: the sender
/// resent the message and it has now been applied.
pub fn resolve_quarantined_copies(
    conn: &mut DbConnection,
    facility: &str,
    control_id: &str,
    at: &str,
) -> QueryResult<usize> {
    diesel::update(
        hl7_message::table
            .filter(hl7_message::facility.eq(facility))
            .filter(hl7_message::control_id.eq(control_id))
            .filter(hl7_message::ack_code.ne("AA"))
            .filter(hl7_message::resolved_at.is_null()),
    )
    .set(hl7_message::resolved_at.eq(at))
    .execute(conn)
}

/// Records a replay of a quarantined message that failed again.
pub fn record_failed_attempt(
    conn: &mut DbConnection,
    id: i64,
    ack_code: &str,
    error_kind: Option<&str>,
    reason: Option<&str>,
    at: &str,
) -> QueryResult<usize> {
    diesel::update(hl7_message::table.find(id))
        .set((
            hl7_message::ack_code.eq(ack_code),
            hl7_message::error_kind.eq(error_kind),
            hl7_message::reason.eq(reason),
            hl7_message::attempts.eq(hl7_message::attempts + 1),
            hl7_message::last_attempt_at.eq(at),
        ))
        .execute(conn)
}

/// The message applied under (facility, control id), as received.
pub fn applied_raw(
    conn: &mut DbConnection,
    facility: &str,
    control_id: &str,
) -> QueryResult<Option<String>> {
    hl7_message::table
        .filter(hl7_message::facility.eq(facility))
        .filter(hl7_message::control_id.eq(control_id))
        .filter(hl7_message::applied.eq(1))
        .select(hl7_message::raw)
        .first(conn)
        .optional()
}

/// Unresolved quarantined messages that came over one connection identity.
pub fn count_quarantined_from(conn: &mut DbConnection, peer: &str) -> QueryResult<i64> {
    hl7_message::table
        .filter(hl7_message::peer.eq(peer))
        .filter(hl7_message::resolved_at.is_null())
        .filter(hl7_message::ack_code.ne("AA"))
        .count()
        .get_result(conn)
}

/// Every logged message.
pub fn count_messages(conn: &mut DbConnection) -> QueryResult<i64> {
    hl7_message::table.count().get_result(conn)
}

/// Unresolved quarantined messages with this acknowledgement code and error kind.
pub fn count_quarantined(
    conn: &mut DbConnection,
    ack_code: &str,
    error_kind: &str,
) -> QueryResult<i64> {
    hl7_message::table
        .filter(hl7_message::ack_code.eq(ack_code))
        .filter(hl7_message::error_kind.eq(error_kind))
        .filter(hl7_message::resolved_at.is_null())
        .count()
        .get_result(conn)
}

// ---------------------------------------------------------------------------------------------
// Patients

/// Demographics one facility sent for one NHS number.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_patient)]
pub struct PatientRow {
    pub id: i64,
    pub facility: String,
    pub nhs_number: String,
    pub local_id: Option<String>,
    pub family_upper: Option<String>,
    pub birth_date: Option<String>,
    /// 1 when written from an ADT message; 0 when only a result or order has named the patient.
    pub from_adt: i32,
    /// FHIR Patient JSON without `id` and `meta`.
    pub resource: String,
    /// MSH-7 of the message that wrote the row, as a UTC instant: the latest message wins.
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = hl7_patient, treat_none_as_null = true)]
pub struct PatientValues {
    pub facility: String,
    pub nhs_number: String,
    pub local_id: Option<String>,
    pub family_upper: Option<String>,
    pub birth_date: Option<String>,
    pub from_adt: i32,
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

pub fn find_patient(
    conn: &mut DbConnection,
    facility: &str,
    nhs_number: &str,
) -> QueryResult<Option<PatientRow>> {
    hl7_patient::table
        .filter(hl7_patient::facility.eq(facility))
        .filter(hl7_patient::nhs_number.eq(nhs_number))
        .select(PatientRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_patient(conn: &mut DbConnection, values: &PatientValues) -> QueryResult<()> {
    diesel::insert_into(hl7_patient::table)
        .values(values)
        .execute(conn)
        .map(drop)
}

/// Replaces row `id` whatever message wrote it.
pub fn replace_patient(
    conn: &mut DbConnection,
    id: i64,
    values: &PatientValues,
) -> QueryResult<()> {
    diesel::update(hl7_patient::table.find(id))
        .set(values)
        .execute(conn)
        .map(drop)
}

impl PatientRow {
    /// The row's values, to write back with a change.
    pub fn values(&self) -> PatientValues {
        PatientValues {
            facility: self.facility.clone(),
            nhs_number: self.nhs_number.clone(),
            local_id: self.local_id.clone(),
            family_upper: self.family_upper.clone(),
            birth_date: self.birth_date.clone(),
            from_adt: self.from_adt,
            resource: self.resource.clone(),
            source_time: self.source_time.clone(),
            message_id: self.message_id,
            last_updated: self.last_updated.clone(),
        }
    }
}

/// Replaces row `id` unless it was written from a later message. Returns whether it changed.
pub fn update_patient_if_not_newer(
    conn: &mut DbConnection,
    id: i64,
    values: &PatientValues,
) -> QueryResult<bool> {
    diesel::update(
        hl7_patient::table
            .find(id)
            .filter(hl7_patient::source_time.le(&values.source_time)),
    )
    .set(values)
    .execute(conn)
    .map(|n| n > 0)
}

/// Every facility's demographics for one NHS number.
/// Whether any facility has sent demographics for this NHS number.
pub fn patient_known(conn: &mut DbConnection, nhs_number: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        hl7_patient::table.filter(hl7_patient::nhs_number.eq(nhs_number)),
    ))
    .get_result(conn)
}

pub fn patients_by_nhs(conn: &mut DbConnection, nhs_number: &str) -> QueryResult<Vec<PatientRow>> {
    hl7_patient::table
        .filter(hl7_patient::nhs_number.eq(nhs_number))
        .order(hl7_patient::id.asc())
        .select(PatientRow::as_select())
        .load(conn)
}

/// NHS numbers of patients whose family name starts with `family_prefix` (compared in upper
/// case, `%` and `_` literal) and born on `birth_date` (`YYYY-MM-DD`).
pub fn nhs_numbers_by_family(
    conn: &mut DbConnection,
    family_prefix: &str,
    birth_date: &str,
) -> QueryResult<Vec<String>> {
    hl7_patient::table
        .filter(
            hl7_patient::family_upper
                .like(scr_db::like_prefix(&family_prefix.to_uppercase()))
                .escape('\\'),
        )
        .filter(hl7_patient::birth_date.eq(birth_date))
        .select(hl7_patient::nhs_number)
        .distinct()
        .order(hl7_patient::nhs_number.asc())
        .load(conn)
}

/// True when any facility has sent demographics for this NHS number.
pub fn nhs_number_known(conn: &mut DbConnection, nhs_number: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        hl7_patient::table.filter(hl7_patient::nhs_number.eq(nhs_number)),
    ))
    .get_result(conn)
}

// ---------------------------------------------------------------------------------------------
// Visits

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_visit)]
pub struct VisitRow {
    pub id: i64,
    pub facility: String,
    pub visit_number: String,
    pub nhs_number: String,
    pub patient_class: Option<String>,
    pub location: Option<String>,
    pub service_code: Option<String>,
    pub admit_time: String,
    pub discharge_time: Option<String>,
    pub sensitive: i32,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = hl7_visit, treat_none_as_null = true)]
pub struct VisitValues {
    pub facility: String,
    pub visit_number: String,
    pub nhs_number: String,
    pub patient_class: Option<String>,
    pub location: Option<String>,
    pub service_code: Option<String>,
    pub admit_time: String,
    pub discharge_time: Option<String>,
    pub sensitive: i32,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

pub fn find_visit(
    conn: &mut DbConnection,
    facility: &str,
    visit_number: &str,
) -> QueryResult<Option<VisitRow>> {
    hl7_visit::table
        .filter(hl7_visit::facility.eq(facility))
        .filter(hl7_visit::visit_number.eq(visit_number))
        .select(VisitRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_visit(conn: &mut DbConnection, values: &VisitValues) -> QueryResult<()> {
    diesel::insert_into(hl7_visit::table)
        .values(values)
        .execute(conn)
        .map(drop)
}

/// Replaces row `id` whatever message wrote it.
pub fn replace_visit(conn: &mut DbConnection, id: i64, values: &VisitValues) -> QueryResult<()> {
    diesel::update(hl7_visit::table.find(id))
        .set(values)
        .execute(conn)
        .map(drop)
}

impl VisitRow {
    /// The row's values, to write back with a change.
    pub fn values(&self) -> VisitValues {
        VisitValues {
            facility: self.facility.clone(),
            visit_number: self.visit_number.clone(),
            nhs_number: self.nhs_number.clone(),
            patient_class: self.patient_class.clone(),
            location: self.location.clone(),
            service_code: self.service_code.clone(),
            admit_time: self.admit_time.clone(),
            discharge_time: self.discharge_time.clone(),
            sensitive: self.sensitive,
            source_time: self.source_time.clone(),
            message_id: self.message_id,
            last_updated: self.last_updated.clone(),
        }
    }
}

/// Replaces row `id` unless it was written from a later message. Returns whether it changed.
pub fn update_visit_if_not_newer(
    conn: &mut DbConnection,
    id: i64,
    values: &VisitValues,
) -> QueryResult<bool> {
    diesel::update(
        hl7_visit::table
            .find(id)
            .filter(hl7_visit::source_time.le(&values.source_time)),
    )
    .set(values)
    .execute(conn)
    .map(|n| n > 0)
}

pub fn visits_by_nhs(conn: &mut DbConnection, nhs_number: &str) -> QueryResult<Vec<VisitRow>> {
    hl7_visit::table
        .filter(hl7_visit::nhs_number.eq(nhs_number))
        .order(hl7_visit::id.asc())
        .select(VisitRow::as_select())
        .load(conn)
}

// ---------------------------------------------------------------------------------------------
// Allergies

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_allergy)]
pub struct AllergyRow {
    pub id: i64,
    pub facility: String,
    pub nhs_number: String,
    pub allergen_key: String,
    pub sensitive: i32,
    /// FHIR AllergyIntolerance JSON without `id` and `meta`.
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = hl7_allergy, treat_none_as_null = true)]
pub struct AllergyValues {
    pub facility: String,
    pub nhs_number: String,
    pub allergen_key: String,
    pub sensitive: i32,
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

pub fn find_allergy(
    conn: &mut DbConnection,
    facility: &str,
    nhs_number: &str,
    allergen_key: &str,
) -> QueryResult<Option<AllergyRow>> {
    hl7_allergy::table
        .filter(hl7_allergy::facility.eq(facility))
        .filter(hl7_allergy::nhs_number.eq(nhs_number))
        .filter(hl7_allergy::allergen_key.eq(allergen_key))
        .select(AllergyRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_allergy(conn: &mut DbConnection, values: &AllergyValues) -> QueryResult<()> {
    diesel::insert_into(hl7_allergy::table)
        .values(values)
        .execute(conn)
        .map(drop)
}

/// Replaces row `id` whatever message wrote it.
pub fn replace_allergy(
    conn: &mut DbConnection,
    id: i64,
    values: &AllergyValues,
) -> QueryResult<()> {
    diesel::update(hl7_allergy::table.find(id))
        .set(values)
        .execute(conn)
        .map(drop)
}

impl AllergyRow {
    /// The row's values, to write back with a change.
    pub fn values(&self) -> AllergyValues {
        AllergyValues {
            facility: self.facility.clone(),
            nhs_number: self.nhs_number.clone(),
            allergen_key: self.allergen_key.clone(),
            sensitive: self.sensitive,
            resource: self.resource.clone(),
            source_time: self.source_time.clone(),
            message_id: self.message_id,
            last_updated: self.last_updated.clone(),
        }
    }
}

/// Replaces row `id` unless it was written from a later message. Returns whether it changed.
pub fn update_allergy_if_not_newer(
    conn: &mut DbConnection,
    id: i64,
    values: &AllergyValues,
) -> QueryResult<bool> {
    diesel::update(
        hl7_allergy::table
            .find(id)
            .filter(hl7_allergy::source_time.le(&values.source_time)),
    )
    .set(values)
    .execute(conn)
    .map(|n| n > 0)
}

pub fn allergies_by_nhs(conn: &mut DbConnection, nhs_number: &str) -> QueryResult<Vec<AllergyRow>> {
    hl7_allergy::table
        .filter(hl7_allergy::nhs_number.eq(nhs_number))
        .order(hl7_allergy::id.asc())
        .select(AllergyRow::as_select())
        .load(conn)
}

pub fn allergy_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<AllergyRow>> {
    hl7_allergy::table
        .find(id)
        .select(AllergyRow::as_select())
        .first(conn)
        .optional()
}

// ---------------------------------------------------------------------------------------------
// Observations

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_observation)]
pub struct ObservationRow {
    pub id: i64,
    pub facility: String,
    pub nhs_number: String,
    /// OBR-3.
    pub filler_order: String,
    /// OBX-3 as `code^system`.
    pub code: String,
    /// OBX-4 (empty when absent).
    pub sub_id: String,
    /// The FHIR status of the latest value.
    pub status: String,
    /// 1 once the result was cancelled (OBX-11 `X`): no longer shown.
    pub cancelled: i32,
    pub sensitive: i32,
    /// FHIR Observation JSON without `id` and `meta`.
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = hl7_observation, treat_none_as_null = true)]
pub struct ObservationValues {
    pub facility: String,
    pub nhs_number: String,
    pub filler_order: String,
    pub code: String,
    pub sub_id: String,
    pub status: String,
    pub cancelled: i32,
    pub sensitive: i32,
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

pub fn find_observation(
    conn: &mut DbConnection,
    facility: &str,
    filler_order: &str,
    code: &str,
    sub_id: &str,
) -> QueryResult<Option<ObservationRow>> {
    hl7_observation::table
        .filter(hl7_observation::facility.eq(facility))
        .filter(hl7_observation::filler_order.eq(filler_order))
        .filter(hl7_observation::code.eq(code))
        .filter(hl7_observation::sub_id.eq(sub_id))
        .select(ObservationRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_observation(conn: &mut DbConnection, values: &ObservationValues) -> QueryResult<()> {
    diesel::insert_into(hl7_observation::table)
        .values(values)
        .execute(conn)
        .map(drop)
}

/// Replaces row `id` whatever message wrote it.
pub fn replace_observation(
    conn: &mut DbConnection,
    id: i64,
    values: &ObservationValues,
) -> QueryResult<()> {
    diesel::update(hl7_observation::table.find(id))
        .set(values)
        .execute(conn)
        .map(drop)
}

impl ObservationRow {
    /// The row's values, to write back with a change.
    pub fn values(&self) -> ObservationValues {
        ObservationValues {
            facility: self.facility.clone(),
            nhs_number: self.nhs_number.clone(),
            filler_order: self.filler_order.clone(),
            code: self.code.clone(),
            sub_id: self.sub_id.clone(),
            status: self.status.clone(),
            cancelled: self.cancelled,
            sensitive: self.sensitive,
            resource: self.resource.clone(),
            source_time: self.source_time.clone(),
            message_id: self.message_id,
            last_updated: self.last_updated.clone(),
        }
    }
}

/// Replaces row `id` unless it was written from a later message. Returns whether it changed.
pub fn update_observation_if_not_newer(
    conn: &mut DbConnection,
    id: i64,
    values: &ObservationValues,
) -> QueryResult<bool> {
    diesel::update(
        hl7_observation::table
            .find(id)
            .filter(hl7_observation::source_time.le(&values.source_time)),
    )
    .set(values)
    .execute(conn)
    .map(|n| n > 0)
}

/// A patient's results that are shown (not cancelled).
pub fn shown_observations_by_nhs(
    conn: &mut DbConnection,
    nhs_number: &str,
) -> QueryResult<Vec<ObservationRow>> {
    hl7_observation::table
        .filter(hl7_observation::nhs_number.eq(nhs_number))
        .filter(hl7_observation::cancelled.eq(0))
        .order(hl7_observation::id.asc())
        .select(ObservationRow::as_select())
        .load(conn)
}

/// One result by id, cancelled or not.
pub fn observation_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ObservationRow>> {
    hl7_observation::table
        .find(id)
        .select(ObservationRow::as_select())
        .first(conn)
        .optional()
}

// ---------------------------------------------------------------------------------------------
// Medications

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hl7_medication)]
pub struct MedicationRow {
    pub id: i64,
    pub facility: String,
    pub nhs_number: String,
    /// ORC-2.
    pub placer_order: String,
    /// The FHIR MedicationStatement status.
    pub status: String,
    /// 1 once the order was cancelled (ORC-1 `CA`): no longer shown.
    pub cancelled: i32,
    pub sensitive: i32,
    /// FHIR MedicationStatement JSON without `id` and `meta`.
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = hl7_medication, treat_none_as_null = true)]
pub struct MedicationValues {
    pub facility: String,
    pub nhs_number: String,
    pub placer_order: String,
    pub status: String,
    pub cancelled: i32,
    pub sensitive: i32,
    pub resource: String,
    pub source_time: String,
    pub message_id: i64,
    pub last_updated: String,
}

pub fn find_medication(
    conn: &mut DbConnection,
    facility: &str,
    placer_order: &str,
) -> QueryResult<Option<MedicationRow>> {
    hl7_medication::table
        .filter(hl7_medication::facility.eq(facility))
        .filter(hl7_medication::placer_order.eq(placer_order))
        .select(MedicationRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_medication(conn: &mut DbConnection, values: &MedicationValues) -> QueryResult<()> {
    diesel::insert_into(hl7_medication::table)
        .values(values)
        .execute(conn)
        .map(drop)
}

/// Replaces row `id` whatever message wrote it.
pub fn replace_medication(
    conn: &mut DbConnection,
    id: i64,
    values: &MedicationValues,
) -> QueryResult<()> {
    diesel::update(hl7_medication::table.find(id))
        .set(values)
        .execute(conn)
        .map(drop)
}

impl MedicationRow {
    /// The row's values, to write back with a change.
    pub fn values(&self) -> MedicationValues {
        MedicationValues {
            facility: self.facility.clone(),
            nhs_number: self.nhs_number.clone(),
            placer_order: self.placer_order.clone(),
            status: self.status.clone(),
            cancelled: self.cancelled,
            sensitive: self.sensitive,
            resource: self.resource.clone(),
            source_time: self.source_time.clone(),
            message_id: self.message_id,
            last_updated: self.last_updated.clone(),
        }
    }
}

/// Replaces row `id` unless it was written from a later message. Returns whether it changed.
pub fn update_medication_if_not_newer(
    conn: &mut DbConnection,
    id: i64,
    values: &MedicationValues,
) -> QueryResult<bool> {
    diesel::update(
        hl7_medication::table
            .find(id)
            .filter(hl7_medication::source_time.le(&values.source_time)),
    )
    .set(values)
    .execute(conn)
    .map(|n| n > 0)
}

/// A patient's medication orders that are shown (not cancelled).
pub fn shown_medications_by_nhs(
    conn: &mut DbConnection,
    nhs_number: &str,
) -> QueryResult<Vec<MedicationRow>> {
    hl7_medication::table
        .filter(hl7_medication::nhs_number.eq(nhs_number))
        .filter(hl7_medication::cancelled.eq(0))
        .order(hl7_medication::id.asc())
        .select(MedicationRow::as_select())
        .load(conn)
}

/// One medication order by id, cancelled or not.
pub fn medication_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<MedicationRow>> {
    hl7_medication::table
        .find(id)
        .select(MedicationRow::as_select())
        .first(conn)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;
    use crate::Store;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn message<'a>(control_id: &'a str, applied: i32, ack: &'a str) -> NewMessage<'a> {
        NewMessage {
            facility: "RXK",
            control_id,
            message_type: "ADT^A01",
            message_time: Some("2026-11-01T09:30:00Z"),
            received_at: "2026-11-01T09:30:01Z",
            ack_code: ack,
            applied,
            error_kind: (ack != "AA").then_some("nhs-number"),
            reason: None,
            raw: "MSH|^~\\&|...",
            attempts: 1,
            peer: None,
        }
    }

    #[test]
    fn an_applied_message_is_logged_once_per_facility_and_control_id() -> TestResult {
        for db in test_databases("store_msg")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let first = insert_applied_message(&mut conn, &message("C1", 1, "AA"))?;
            assert!(first.is_some(), "{}", db.label);
            assert_eq!(
                insert_applied_message(&mut conn, &message("C1", 1, "AA"))?,
                None,
                "{}",
                db.label
            );
            let dup = insert_message(&mut conn, &message("C1", 0, "AA"))?;
            assert!(Some(dup) > first);
            let quarantined = insert_message(&mut conn, &message("C2", 0, "AE"))?;
            assert_eq!(
                quarantined_messages(&mut conn)?
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>(),
                vec![quarantined]
            );
            assert_eq!(count_quarantined(&mut conn, "AE", "nhs-number")?, 1);
            record_failed_attempt(
                &mut conn,
                quarantined,
                "AE",
                Some("nhs-number"),
                Some("again"),
                "2026-11-02T00:00:00Z",
            )?;
            assert_eq!(message_by_id(&mut conn, quarantined)?.attempts, 2);
            assert_eq!(
                resolve_quarantined_copies(&mut conn, "RXK", "C2", "2026-11-03T00:00:00Z")?,
                1
            );
            assert!(quarantined_messages(&mut conn)?.is_empty());
            assert!(matches!(
                message_by_id(&mut conn, 999_999),
                Err(StoreError::NotFound { .. })
            ));
            assert_eq!(count_messages(&mut conn)?, 3);
        }
        Ok(())
    }

    #[test]
    fn an_older_message_does_not_overwrite_a_newer_row() -> TestResult {
        for db in test_databases("store_latest")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let mut v = PatientValues {
                facility: "RXK".into(),
                nhs_number: "9990000018".into(),
                local_id: Some("K1".into()),
                family_upper: Some("SMITH".into()),
                birth_date: Some("1970-01-02".into()),
                from_adt: 1,
                resource: "{}".into(),
                source_time: "2026-11-02T00:00:00Z".into(),
                message_id: 1,
                last_updated: "2026-11-02T00:00:00Z".into(),
            };
            insert_patient(&mut conn, &v)?;
            let row = find_patient(&mut conn, "RXK", "9990000018")?.ok_or("missing")?;
            v.source_time = "2026-11-01T00:00:00Z".into();
            v.local_id = None;
            assert!(
                !update_patient_if_not_newer(&mut conn, row.id, &v)?,
                "{}",
                db.label
            );
            v.source_time = "2026-11-03T00:00:00Z".into();
            assert!(
                update_patient_if_not_newer(&mut conn, row.id, &v)?,
                "{}",
                db.label
            );
            assert_eq!(
                find_patient(&mut conn, "RXK", "9990000018")?
                    .ok_or("missing")?
                    .local_id,
                None
            );
            assert_eq!(
                nhs_numbers_by_family(&mut conn, "smi", "1970-01-02")?,
                vec!["9990000018".to_owned()]
            );
            assert!(nhs_numbers_by_family(&mut conn, "smi", "1970-01-03")?.is_empty());
            assert!(
                nhs_numbers_by_family(&mut conn, "s%", "1970-01-02")?.is_empty(),
                "{}: % is literal",
                db.label
            );
            assert!(nhs_number_known(&mut conn, "9990000018")?);
            assert!(!nhs_number_known(&mut conn, "9434765919")?);
        }
        Ok(())
    }
}
