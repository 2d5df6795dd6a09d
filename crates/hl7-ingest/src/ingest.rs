//! Receiving messages: check, translate, store, acknowledge.
//!
//! Every message is logged with its acknowledgement. An accepted message is applied in one
//! transaction together with its log row, and acknowledged `AA` only after that commits; the
//! same control id from the same facility is acknowledged `AA` again and applied once. A message
//! that cannot be applied is kept in the quarantine (`AE`: understood but not applied; `AR`:
//! rejected) where an operator can list it and replay it. An `Err` means the database itself
//! failed: nothing is acknowledged and the sender should retry.

use diesel::Connection;
use serde_json::{json, Value};

use scr_db::DbPool;
use scr_store::hl7::{
    self, AllergyValues, MedicationValues, NewMessage, ObservationValues, PatientValues,
    VisitValues,
};
use scr_store::{DbConnection, StoreError};

use crate::senders::{Origin, Senders};
use crate::translate::{self, Header, OrderAction, Plan, Rejection};
use scr_hl7::parser::{self, escape};
use scr_hl7::time::hl7_from_iso;
use scr_hl7::ErrorKind;

/// A sending facility (MSH-4) the feed accepts, with how its messages are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    /// ODS code, upper case.
    pub ods: String,
    /// Local times without an offset are this zone's (Europe/London by default).
    pub time_zone: jiff::tz::TimeZone,
    /// The FHIR code system of the facility's local codes (coding systems other than SNOMED CT,
    /// LOINC and dm+d, e.g. `L`): [`default_local_code_system`] unless configured.
    pub local_code_system: String,
}

impl Facility {
    /// A facility with the defaults: Europe/London, and the default local code system.
    pub fn new(ods: &str) -> Facility {
        let ods = ods.trim().to_ascii_uppercase();
        Facility {
            local_code_system: default_local_code_system(&ods),
            time_zone: scr_fhir::zone::default_zone(),
            ods,
        }
    }
}

impl From<&str> for Facility {
    fn from(ods: &str) -> Facility {
        Facility::new(ods)
    }
}

/// The code system of a facility's local codes when none is configured:
/// `https://scr.example.nhs.uk/CodeSystem/local-{ODS}` (deterministic, one per facility, so that
/// two trusts' local code `K` never read as the same code).
pub fn default_local_code_system(ods: &str) -> String {
    format!(
        "{}/local-{}",
        scr_fhir::systems::SCR_CODE_SYSTEM_BASE,
        ods.trim().to_ascii_uppercase()
    )
}

/// What the feed accepts, from the deployment's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hl7Config {
    /// Accepted sending facilities (MSH-4).
    pub facilities: Vec<Facility>,
    /// Hospital services (PV1-10) or diagnostic sections (OBR-24) whose records are sensitive
    /// (R-SENS-2), e.g. `GUM`, `FERT`.
    pub sensitive_services: Vec<String>,
    /// SNOMED CT / LOINC codes of the sensitive value sets (R-SENS-1).
    pub sensitive_codes: Vec<String>,
}

impl Hl7Config {
    /// The configured facility with this ODS code (any case).
    pub fn facility(&self, ods: &str) -> Option<&Facility> {
        let ods = ods.trim();
        self.facilities
            .iter()
            .find(|f| !ods.is_empty() && f.ods.trim().eq_ignore_ascii_case(ods))
    }

    /// The zone a facility's local times are read in (the default zone for one not configured,
    /// whose messages are rejected anyway).
    pub fn time_zone(&self, ods: &str) -> jiff::tz::TimeZone {
        self.facility(ods)
            .map_or_else(scr_fhir::zone::default_zone, |f| f.time_zone.clone())
    }

    pub fn is_sensitive_service(&self, service: &str) -> bool {
        let service = service.trim();
        !service.is_empty()
            && self
                .sensitive_services
                .iter()
                .any(|s| s.trim().eq_ignore_ascii_case(service))
    }

    pub fn is_sensitive_code(&self, code: &str) -> bool {
        let code = code.trim();
        !code.is_empty() && self.sensitive_codes.iter().any(|c| c.trim() == code)
    }
}

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted and committed.
    AA,
    /// Understood but not applied; quarantined.
    AE,
    /// Rejected; quarantined.
    AR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }

    pub fn parse(s: &str) -> Option<AckCode> {
        match s {
            "AA" => Some(AckCode::AA),
            "AE" => Some(AckCode::AE),
            "AR" => Some(AckCode::AR),
            _ => None,
        }
    }
}

/// The acknowledgement of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: AckCode,
    /// MSH-10 of the acknowledged message (empty when it could not be read).
    pub control_id: String,
    /// Why the message was not applied (AE/AR); never patient data.
    pub reason: Option<String>,
    /// The message had been applied before: acknowledged again, not applied again.
    pub duplicate: bool,
    /// The cause of an AE/AR.
    pub error_kind: Option<ErrorKind>,
    /// The message log row: the applied row, the duplicate's row, or the quarantined row.
    pub message_id: Option<i64>,
    /// MSH-3, MSH-4 and MSH-6 of the acknowledged message, swapped into the ACK's header.
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_facility: String,
    /// MSH-9.2 of the acknowledged message.
    pub trigger: String,
    /// The ACK's MSH-7 (HL7 timestamp).
    pub time: String,
}

impl Ack {
    /// The ACK message, segments ended by `\r` (not MLLP-framed): MSH with sender and receiver
    /// swapped, MSA with the code and the echoed control id, and for AE/AR an ERR segment with
    /// the HL7 table 0357 code and the reason.
    pub fn to_hl7(&self, receiving_app: &str) -> String {
        let message_type = if self.trigger.is_empty() {
            "ACK".to_owned()
        } else {
            format!("ACK^{}^ACK", escape(&self.trigger))
        };
        let ack_control_id: String = format!("A{}", self.control_id).chars().take(20).collect();
        let mut out = format!(
            "MSH|^~\\&|{}|{}|{}|{}|{}||{}|{}|P|2.4\r",
            escape(receiving_app),
            escape(&self.receiving_facility),
            escape(&self.sending_application),
            escape(&self.sending_facility),
            self.time,
            message_type,
            escape(&ack_control_id),
        );
        out.push_str(&format!(
            "MSA|{}|{}",
            self.code.as_str(),
            escape(&self.control_id)
        ));
        if let Some(reason) = &self.reason {
            out.push_str(&format!("|{}", escape(reason)));
        }
        out.push('\r');
        if self.code != AckCode::AA {
            let code = self.error_kind.map_or(207, ErrorKind::hl7_error_code);
            let text = self.reason.as_deref().unwrap_or("not applied");
            // ERR-1 (v2.4 ELD): segment^sequence^field^code&text&HL70357.
            let text = escape(text).replace('&', "\\T\\");
            out.push_str(&format!("ERR|^^^{code}&{text}&HL70357\r"));
        }
        out
    }
}

/// A message in the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedMessage {
    pub id: i64,
    pub facility: String,
    pub control_id: String,
    pub message_type: String,
    pub received_at: String,
    pub code: AckCode,
    pub error_kind: Option<ErrorKind>,
    pub reason: Option<String>,
    /// 1 + the number of replays.
    pub attempts: i32,
    pub last_attempt_at: Option<String>,
    /// The message as received.
    pub raw: String,
}

const DUPLICATE_REASON: &str = "duplicate of an applied message";
/// Attempts when a concurrent writer causes a unique-key conflict.
const MAX_ATTEMPTS: u32 = 3;

/// Receives one message (without MLLP framing). `now` is the receipt time, an ISO 8601 instant.
pub fn ingest_message(
    pool: &DbPool,
    raw: &str,
    cfg: &Hl7Config,
    now: &str,
) -> Result<Ack, StoreError> {
    let prepared = prepare(raw, cfg, now);
    ingest(pool, raw, prepared, now, &Via::Operator)
}

/// Receives one message from an MLLP connection: as [`ingest_message`], after checking that
/// the connection may send for the facility in MSH-4 (`AR` and quarantined when it may not),
/// with the connection recorded on the message and the quarantine capped per connection.
pub fn receive(
    pool: &DbPool,
    connection: &Origin,
    senders: &Senders,
    raw: &str,
    cfg: &Hl7Config,
    now: &str,
) -> Result<Ack, StoreError> {
    let mut prepared = prepare(raw, cfg, now);
    if let Some(reason) = senders.refusal(connection, &prepared.header.facility) {
        prepared.outcome = Err(Rejection::rejected(ErrorKind::SenderNotAllowed, reason));
    }
    let via = Via::Connection {
        identity: connection.identity(),
        quarantine_cap: senders.quarantine_cap,
    };
    ingest(pool, raw, prepared, now, &via)
}

/// How a message arrived: what its log row records and how its quarantine is bounded.
enum Via {
    /// A file loaded by an operator (`scr ingest hl7`, `scr generate`).
    Operator,
    /// The replay of a quarantined message, by its id.
    Replay(i64),
    /// An MLLP connection, by its identity ([`Origin::identity`]).
    Connection {
        identity: String,
        quarantine_cap: u64,
    },
}

impl Via {
    fn replay_of(&self) -> Option<i64> {
        match self {
            Via::Replay(id) => Some(*id),
            _ => None,
        }
    }

    fn peer(&self) -> Option<&str> {
        match self {
            Via::Connection { identity, .. } => Some(identity),
            _ => None,
        }
    }
}

/// Receives many messages in one transaction, each in its own savepoint: a message that is
/// quarantined does not undo the others, and nothing of the batch is kept if the store fails.
/// For loading a backfill into a store no one else writes to (`scr generate`): one commit per
/// batch instead of one per message. The MLLP listener acknowledges message by message and
/// uses [`ingest_message`].
pub fn ingest_batch(
    conn: &mut DbConnection,
    raws: &[String],
    cfg: &Hl7Config,
    now: &str,
) -> Result<Vec<Ack>, StoreError> {
    conn.transaction::<_, StoreError, _>(|c| {
        raws.iter()
            .map(|raw| record(c, raw, &prepare(raw, cfg, now), now, &Via::Operator))
            .collect()
    })
}

/// Rejects (AR) a message too large to accept, keeping its first bytes in the quarantine so
/// the operator can see what was sent. `prefix` is what was kept; `size` the full size.
pub fn reject_too_large(
    pool: &DbPool,
    connection: &Origin,
    senders: &Senders,
    prefix: &str,
    size: usize,
    limit: usize,
    now: &str,
) -> Result<Ack, StoreError> {
    let header = first_line_header(prefix, now, &Hl7Config::default());
    let rejection = Rejection::rejected(ErrorKind::TooLarge, format!("message of {size} bytes exceeds the {limit}-byte limit; its first bytes are kept for review"));
    let via = Via::Connection {
        identity: connection.identity(),
        quarantine_cap: senders.quarantine_cap,
    };
    let mut conn = scr_store::connection(pool)?;
    quarantine(&mut conn, prefix, &header, &rejection, now, &via)
}

/// The quarantine, oldest first.
pub fn list_quarantine(pool: &DbPool) -> Result<Vec<QuarantinedMessage>, StoreError> {
    let mut conn = scr_store::connection(pool)?;
    hl7::quarantined_messages(&mut conn)?
        .into_iter()
        .map(|row| {
            let code = AckCode::parse(&row.ack_code).ok_or_else(|| StoreError::Corrupt {
                entity: "HL7 message",
                id: row.id.to_string(),
                detail: format!("acknowledgement code {:?}", row.ack_code),
            })?;
            Ok(QuarantinedMessage {
                id: row.id,
                error_kind: row.error_kind.as_deref().and_then(ErrorKind::parse),
                facility: row.facility,
                control_id: row.control_id,
                message_type: row.message_type,
                received_at: row.received_at,
                code,
                reason: row.reason,
                attempts: row.attempts,
                last_attempt_at: row.last_attempt_at,
                raw: row.raw,
            })
        })
        .collect()
}

/// Runs a quarantined message through the feed again (after the configuration or the data was
/// fixed). When it is applied the quarantined row is marked resolved; when it fails again the
/// row records the new outcome and one more attempt. `NotFound` when `id` is not in the
/// quarantine.
pub fn replay(pool: &DbPool, id: i64, cfg: &Hl7Config, now: &str) -> Result<Ack, StoreError> {
    let row = hl7::message_by_id(&mut *scr_store::connection(pool)?, id)?;
    if row.ack_code == AckCode::AA.as_str() || row.resolved_at.is_some() {
        return Err(StoreError::NotFound {
            entity: "quarantined HL7 message",
            id: id.to_string(),
        });
    }
    let prepared = prepare(&row.raw, cfg, now);
    ingest(pool, &row.raw, prepared, now, &Via::Replay(id))
}

/// Splits a file of messages: MLLP-framed (`0x0B` … `0x1C 0x0D`), or plain text where each line
/// starting `MSH|` begins a message and blank lines separate messages. Segments are ended by
/// `\r`. Text that belongs to no message is returned as a message of its own, so that ingesting
/// it quarantines it rather than dropping it.
pub fn split_messages(file_content: &str) -> Vec<String> {
    if file_content.contains('\u{b}') {
        return file_content
            .split('\u{b}')
            .map(|frame| frame.split('\u{1c}').next().unwrap_or_default())
            .filter(|frame| !frame.trim().is_empty())
            .flat_map(split_plain)
            .collect();
    }
    split_plain(file_content)
}

fn split_plain(text: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let flush = |current: &mut Vec<&str>, messages: &mut Vec<String>| {
        if !current.is_empty() {
            messages.push(current.iter().map(|s| format!("{s}\r")).collect());
            current.clear();
        }
    };
    for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        if line.trim().is_empty() {
            flush(&mut current, &mut messages);
        } else {
            if line.starts_with("MSH|") {
                flush(&mut current, &mut messages);
            }
            current.push(line);
        }
    }
    flush(&mut current, &mut messages);
    messages
}

/// The message as checked and translated: its header (for the ACK and the log) and either the
/// plan to apply or why it is not applied.
struct Prepared {
    header: Header,
    outcome: Result<Plan, Rejection>,
}

/// The header of a message that cannot be parsed whole: what its first line holds, if that is
/// an MSH on its own, so the ACK can still echo MSH-10.
fn first_line_header(raw: &str, now: &str, cfg: &Hl7Config) -> Header {
    let first = raw
        .split(['\r', '\n'])
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    parser::parse(first)
        .map(|m| translate::header(&m, now, cfg))
        .unwrap_or_default()
}

fn prepare(raw: &str, cfg: &Hl7Config, now: &str) -> Prepared {
    let msg = match parser::parse(raw) {
        Ok(m) => m,
        Err(e) => {
            let header = first_line_header(raw, now, cfg);
            let rejection = Rejection::rejected(
                ErrorKind::Unparseable,
                format!("not a valid HL7 v2 message: {e}"),
            );
            return Prepared {
                header,
                outcome: Err(rejection),
            };
        }
    };
    let header = translate::header(&msg, now, cfg);
    let outcome = translate::check_header(&msg, &header, cfg)
        .and_then(|kind| translate::plan(&msg, kind, &header, cfg));
    Prepared { header, outcome }
}

fn ingest(
    pool: &DbPool,
    raw: &str,
    prepared: Prepared,
    now: &str,
    via: &Via,
) -> Result<Ack, StoreError> {
    match try_ingest(pool, raw, &prepared, now, via) {
        Err(e) => {
            // Nothing was applied or kept (the transaction rolled back, or never began): the
            // sender is told AR, never AA, and sends it again; the connection stays open.
            log::error!(
                "hl7: {} {} could not be stored; answered AR: {}",
                prepared.header.message_type,
                prepared.header.control_id,
                scr_store::error_chain(&e)
            );
            let mut a = ack(
                &prepared.header,
                AckCode::AR,
                Some(
                    "the receiver could not store this message; nothing was applied: send it again"
                        .into(),
                ),
                false,
                None,
                now,
            );
            a.error_kind = Some(ErrorKind::StoreUnavailable);
            Ok(a)
        }
        ok => ok,
    }
}

fn try_ingest(
    pool: &DbPool,
    raw: &str,
    prepared: &Prepared,
    now: &str,
    via: &Via,
) -> Result<Ack, StoreError> {
    let mut conn = scr_store::connection(pool)?;
    let mut attempt = 1;
    loop {
        // SQLite's busy store (another writer, e.g. the audit trail) is retried with back-off.
        match scr_store::retry_busy(|| record(&mut conn, raw, prepared, now, via)) {
            Err(e) if attempt < MAX_ATTEMPTS && e.is_retryable_conflict() => {
                log::warn!(
                    "hl7: {} {} conflicted with a concurrent message; retrying",
                    prepared.header.message_type,
                    prepared.header.control_id
                );
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Why a transaction applying a plan stopped.
enum ApplyError {
    /// The message contradicts the store: rolled back and quarantined.
    Rejected(Rejection),
    Store(StoreError),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(e: diesel::result::Error) -> Self {
        ApplyError::Store(e.into())
    }
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Store(e)
    }
}

fn record(
    conn: &mut DbConnection,
    raw: &str,
    prepared: &Prepared,
    now: &str,
    via: &Via,
) -> Result<Ack, StoreError> {
    let h = &prepared.header;
    let plan = match &prepared.outcome {
        Ok(plan) => plan,
        Err(rejection) => return quarantine(conn, raw, h, rejection, now, via),
    };
    let replay_of = via.replay_of();
    let applied = conn.transaction::<_, ApplyError, _>(|c| {
        let row = NewMessage {
            facility: &h.facility,
            control_id: &h.control_id,
            message_type: &h.message_type,
            message_time: h.message_time.as_deref(),
            received_at: now,
            ack_code: AckCode::AA.as_str(),
            applied: 1,
            error_kind: None,
            reason: None,
            raw,
            attempts: 1,
            peer: via.peer(),
        };
        match hl7::insert_applied_message(c, &row)? {
            None => {
                // A resend is the same message. The same control id with other content is not:
                // someone else used it first (a spoofed or replayed id) or the sender reuses
                // ids. Acknowledging it AA would silently drop the genuine message.
                let applied = hl7::applied_raw(c, &h.facility, &h.control_id)?;
                if applied.is_some_and(|applied| !same_message(&applied, raw)) {
                    return Err(ApplyError::Rejected(Rejection {
                        code: AckCode::AE,
                        kind: ErrorKind::ControlIdReused,
                        reason: "control id (MSH-10) was applied before with different content; not applied, kept for review".into(),
                    }));
                }
                let id = match replay_of {
                    Some(q) => {
                        hl7::resolve_message(c, q, now)?;
                        q
                    }
                    None => hl7::insert_message(
                        c,
                        &NewMessage {
                            applied: 0,
                            reason: Some(DUPLICATE_REASON),
                            ..row
                        },
                    )?,
                };
                Ok((id, true))
            }
            Some(message_id) => {
                apply(c, plan, h, message_id, now)?;
                hl7::resolve_quarantined_copies(c, &h.facility, &h.control_id, now)?;
                if let Some(q) = replay_of {
                    hl7::resolve_message(c, q, now)?;
                }
                Ok((message_id, false))
            }
        }
    });
    match applied {
        Ok((message_id, duplicate)) => {
            // Accepted messages are the normal case: debug, so a backfill does not flood the log.
            log::debug!(
                "hl7: {} {} from {} -> AA{}",
                h.message_type,
                h.control_id,
                h.facility,
                if duplicate { " (duplicate)" } else { "" }
            );
            Ok(ack(h, AckCode::AA, None, duplicate, Some(message_id), now))
        }
        Err(ApplyError::Rejected(rejection)) => quarantine(conn, raw, h, &rejection, now, via),
        Err(ApplyError::Store(e)) => Err(e),
    }
}

/// The same message, sent again: equal segment by segment, whatever the line endings and
/// trailing white space.
fn same_message(a: &str, b: &str) -> bool {
    let segments = |m: &str| -> Vec<String> {
        m.split(['\r', '\n'])
            .map(|s| s.trim_end().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    segments(a) == segments(b)
}

fn quarantine(
    conn: &mut DbConnection,
    raw: &str,
    h: &Header,
    rejection: &Rejection,
    now: &str,
    via: &Via,
) -> Result<Ack, StoreError> {
    if let Via::Connection {
        identity,
        quarantine_cap,
    } = via
    {
        let held = hl7::count_quarantined_from(conn, identity)?;
        if u64::try_from(held).unwrap_or(u64::MAX) >= *quarantine_cap {
            log::warn!(
                "hl7: {} {} from connection {identity} -> AR: its quarantine holds {held} messages (cap {quarantine_cap}); not kept",
                h.message_type,
                h.control_id,
            );
            return Ok(Ack {
                error_kind: Some(ErrorKind::QuarantineFull),
                ..ack(
                    h,
                    AckCode::AR,
                    Some("the quarantine for this connection is full; the message was not kept, resend once the operator has reviewed the quarantine".into()),
                    false,
                    None,
                    now,
                )
            });
        }
    }
    let (code, kind) = (rejection.code.as_str(), rejection.kind.as_str());
    let id = match via.replay_of() {
        Some(q) => {
            hl7::record_failed_attempt(conn, q, code, Some(kind), Some(&rejection.reason), now)?;
            q
        }
        None => conn.transaction::<_, StoreError, _>(|c| {
            Ok(hl7::insert_message(
                c,
                &NewMessage {
                    facility: &h.facility,
                    control_id: &h.control_id,
                    message_type: &h.message_type,
                    message_time: h.message_time.as_deref(),
                    received_at: now,
                    ack_code: code,
                    applied: 0,
                    error_kind: Some(kind),
                    reason: Some(&rejection.reason),
                    raw,
                    attempts: 1,
                    peer: via.peer(),
                },
            )?)
        })?,
    };
    log::warn!(
        "hl7: {} {} from {} -> {code} ({kind}), quarantined as {id}",
        h.message_type,
        h.control_id,
        h.facility
    );
    Ok(Ack {
        error_kind: Some(rejection.kind),
        ..ack(
            h,
            rejection.code,
            Some(rejection.reason.clone()),
            false,
            Some(id),
            now,
        )
    })
}

fn ack(
    h: &Header,
    code: AckCode,
    reason: Option<String>,
    duplicate: bool,
    message_id: Option<i64>,
    now: &str,
) -> Ack {
    Ack {
        code,
        control_id: h.control_id.clone(),
        reason,
        duplicate,
        error_kind: None,
        message_id,
        sending_application: h.sending_application.clone(),
        sending_facility: h.facility.clone(),
        receiving_facility: h.receiving_facility.clone(),
        trigger: h.trigger.clone(),
        time: hl7_from_iso(now),
    }
}

// ---------------------------------------------------------------------------------------------
// Applying a plan

fn conflict(reason: &str) -> ApplyError {
    ApplyError::Rejected(Rejection::error(ErrorKind::Conflict, reason))
}

/// Writes everything a message does. Rows written from a later message are not overwritten
/// (a backlog may arrive out of order), but a sensitive label is never removed.
fn apply(
    c: &mut DbConnection,
    plan: &Plan,
    h: &Header,
    message_id: i64,
    now: &str,
) -> Result<(), ApplyError> {
    let facility = h.facility.as_str();
    let nhs = plan.nhs_number.as_str();
    let newer_or_same = |stored: &str| h.source_time.as_str() >= stored;

    // A result for a patient never seen is not applied: it may be misidentified, and a sparse
    // patient made from it would look like a real record. The operator replays it once the
    // patient's ADT has arrived.
    if plan.needs_known_patient && !hl7::patient_known(c, nhs)? {
        return Err(ApplyError::Rejected(Rejection::error(
            ErrorKind::UnknownPatient,
            "the patient of this result (PID-3) is unknown: no ADT message has registered them; \
             the result is quarantined and can be replayed once they are",
        )));
    }

    // Demographics: an ADT replaces older ones; a result or order only fills in a gap.
    let p = &plan.patient;
    let values = PatientValues {
        facility: facility.to_owned(),
        nhs_number: nhs.to_owned(),
        local_id: p.local_id.clone(),
        family_upper: p.family_upper.clone(),
        birth_date: p.birth_date.clone(),
        from_adt: i32::from(p.from_adt),
        resource: p.resource.to_string(),
        source_time: h.source_time.clone(),
        message_id,
        last_updated: now.to_owned(),
    };
    match hl7::find_patient(c, facility, nhs)? {
        None => hl7::insert_patient(c, &values)?,
        Some(existing) if p.from_adt && existing.from_adt == 0 => {
            hl7::replace_patient(c, existing.id, &values)?
        }
        Some(existing) if p.from_adt => {
            hl7::update_patient_if_not_newer(c, existing.id, &values)?;
        }
        Some(_) => {}
    }

    // The visit (ADT): the newer message's values win, the older one fills gaps.
    if let Some(v) = &plan.visit {
        let existing = hl7::find_visit(c, facility, &v.visit_number)?;
        if existing.as_ref().is_some_and(|e| e.nhs_number != nhs) {
            return Err(conflict(
                "the visit number (PV1-19) belongs to another patient",
            ));
        }
        match existing {
            None => hl7::insert_visit(
                c,
                &VisitValues {
                    facility: facility.to_owned(),
                    visit_number: v.visit_number.clone(),
                    nhs_number: nhs.to_owned(),
                    patient_class: v.patient_class.clone(),
                    location: v.location.clone(),
                    service_code: v.service_code.clone(),
                    admit_time: v
                        .admit_time
                        .clone()
                        .or_else(|| h.message_time.clone())
                        .unwrap_or_else(|| now.to_owned()),
                    discharge_time: v.discharge_time.clone(),
                    sensitive: i32::from(v.sensitive),
                    source_time: h.source_time.clone(),
                    message_id,
                    last_updated: now.to_owned(),
                },
            )?,
            Some(e) => {
                let mut merged = e.values();
                let newer = newer_or_same(&e.source_time);
                let pick = |new: &Option<String>, old: &mut Option<String>| {
                    if new.is_some() && (newer || old.is_none()) {
                        old.clone_from(new);
                    }
                };
                pick(&v.patient_class, &mut merged.patient_class);
                pick(&v.location, &mut merged.location);
                pick(&v.service_code, &mut merged.service_code);
                pick(&v.discharge_time, &mut merged.discharge_time);
                if let Some(admit) = v.admit_time.as_ref().filter(|_| newer) {
                    merged.admit_time.clone_from(admit);
                }
                merged.sensitive = i32::from(v.sensitive || e.sensitive == 1);
                if newer {
                    merged.source_time.clone_from(&h.source_time);
                    merged.message_id = message_id;
                }
                merged.last_updated = now.to_owned();
                hl7::replace_visit(c, e.id, &merged)?;
            }
        }
    }

    // Everything recorded in a sensitive visit is sensitive (R-SENS-2), whichever message said
    // the visit was sensitive.
    let visit_number = plan
        .visit
        .as_ref()
        .map(|v| v.visit_number.as_str())
        .or(plan.visit_ref.as_deref());
    let visit_sensitive = match visit_number {
        Some(number) => hl7::find_visit(c, facility, number)?.is_some_and(|v| v.sensitive == 1),
        None => false,
    };

    for a in &plan.allergies {
        let values = AllergyValues {
            facility: facility.to_owned(),
            nhs_number: nhs.to_owned(),
            allergen_key: a.allergen_key.clone(),
            sensitive: i32::from(a.sensitive || visit_sensitive),
            resource: a.resource.to_string(),
            source_time: h.source_time.clone(),
            message_id,
            last_updated: now.to_owned(),
        };
        match hl7::find_allergy(c, facility, nhs, &a.allergen_key)? {
            None => hl7::insert_allergy(c, &values)?,
            Some(e) => {
                let sensitive = values.sensitive == 1 || e.sensitive == 1;
                let values = AllergyValues {
                    sensitive: i32::from(sensitive),
                    ..values
                };
                if !hl7::update_allergy_if_not_newer(c, e.id, &values)?
                    && sensitive
                    && e.sensitive == 0
                {
                    hl7::replace_allergy(
                        c,
                        e.id,
                        &AllergyValues {
                            sensitive: 1,
                            ..e.values()
                        },
                    )?;
                }
            }
        }
    }

    for o in &plan.observations {
        let values = ObservationValues {
            facility: facility.to_owned(),
            nhs_number: nhs.to_owned(),
            filler_order: o.filler_order.clone(),
            code: o.code.clone(),
            sub_id: o.sub_id.clone(),
            status: o.status.clone(),
            cancelled: i32::from(o.cancelled),
            sensitive: i32::from(o.sensitive || visit_sensitive),
            resource: o.resource.to_string(),
            source_time: h.source_time.clone(),
            message_id,
            last_updated: now.to_owned(),
        };
        match hl7::find_observation(c, facility, &o.filler_order, &o.code, &o.sub_id)? {
            None => hl7::insert_observation(c, &values)?,
            Some(e) if e.nhs_number != nhs => {
                return Err(conflict(
                    "the result (OBR-3, OBX-3, OBX-4) belongs to another patient",
                ))
            }
            Some(e) => {
                let sensitive = values.sensitive == 1 || e.sensitive == 1;
                let values = ObservationValues {
                    sensitive: i32::from(sensitive),
                    ..values
                };
                if !hl7::update_observation_if_not_newer(c, e.id, &values)?
                    && sensitive
                    && e.sensitive == 0
                {
                    hl7::replace_observation(
                        c,
                        e.id,
                        &ObservationValues {
                            sensitive: 1,
                            ..e.values()
                        },
                    )?;
                }
            }
        }
    }

    for m in &plan.medications {
        let existing = hl7::find_medication(c, facility, &m.placer_order)?;
        if existing.as_ref().is_some_and(|e| e.nhs_number != nhs) {
            return Err(conflict(
                "the medication order (ORC-2) belongs to another patient",
            ));
        }
        let sensitive =
            m.sensitive || visit_sensitive || existing.as_ref().is_some_and(|e| e.sensitive == 1);
        let (status, cancelled, resource) = match (m.action, &existing, &m.resource) {
            (OrderAction::Active, _, Some(r)) => ("active", 0, r.clone()),
            (OrderAction::Stop, Some(e), _) => (
                "stopped",
                0,
                stopped(stored_json(e.id, &e.resource)?, m.end_time.as_deref()),
            ),
            (OrderAction::Stop, None, Some(r)) => ("stopped", 0, r.clone()),
            (OrderAction::Stop, None, None) => {
                return Err(conflict(
                    "the medication order to discontinue (ORC-2) is not known",
                ))
            }
            (OrderAction::Cancel, Some(e), _) => (
                "not-taken",
                1,
                with_status(stored_json(e.id, &e.resource)?, "not-taken"),
            ),
            (OrderAction::Cancel, None, Some(r)) => {
                ("not-taken", 1, with_status(r.clone(), "not-taken"))
            }
            // Nothing to cancel.
            (OrderAction::Cancel, None, None) => continue,
            (OrderAction::Active, _, None) => {
                return Err(conflict("a new medication order has no RXE segment"))
            }
        };
        let values = MedicationValues {
            facility: facility.to_owned(),
            nhs_number: nhs.to_owned(),
            placer_order: m.placer_order.clone(),
            status: status.to_owned(),
            cancelled,
            sensitive: i32::from(sensitive),
            resource: resource.to_string(),
            source_time: h.source_time.clone(),
            message_id,
            last_updated: now.to_owned(),
        };
        match existing {
            None => hl7::insert_medication(c, &values)?,
            Some(e) => {
                if !hl7::update_medication_if_not_newer(c, e.id, &values)?
                    && sensitive
                    && e.sensitive == 0
                {
                    hl7::replace_medication(
                        c,
                        e.id,
                        &MedicationValues {
                            sensitive: 1,
                            ..e.values()
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn stored_json(id: i64, text: &str) -> Result<Value, ApplyError> {
    serde_json::from_str(text).map_err(|e| {
        ApplyError::Store(StoreError::Corrupt {
            entity: "HL7 medication",
            id: id.to_string(),
            detail: e.to_string(),
        })
    })
}

fn with_status(mut resource: Value, status: &str) -> Value {
    resource["status"] = status.into();
    resource
}

/// A stored MedicationStatement, now stopped at `end`.
fn stopped(resource: Value, end: Option<&str>) -> Value {
    let mut r = with_status(resource, "stopped");
    if let Some(end) = end {
        match r.get_mut("effectivePeriod").and_then(Value::as_object_mut) {
            Some(period) => {
                period.insert("end".into(), end.into());
            }
            None => r["effectivePeriod"] = json!({ "end": end }),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use scr_hl7::examples::{with_field, ADT_A01, ORU_R01, RDE_O11};
    use scr_store::test_support::{test_databases, TestDb};
    use scr_store::Store;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    pub(crate) fn cfg() -> Hl7Config {
        Hl7Config {
            facilities: vec!["RXK".into(), "RYW".into()],
            sensitive_services: vec!["GUM".into(), "FERT".into()],
            sensitive_codes: vec!["399186007".into()],
        }
    }

    const NOW: &str = "2026-11-05T10:00:00Z";

    /// Jane Smith's ADT, so that her results are for a known patient.
    fn register_jane(store: &Store) -> TestResult {
        assert_eq!(
            ingest_message(store.pool(), ADT_A01, &cfg(), NOW)?.code,
            AckCode::AA
        );
        Ok(())
    }

    fn stores(name: &str) -> Result<Vec<(TestDb, Store)>, Box<dyn std::error::Error>> {
        test_databases(name)?
            .into_iter()
            .map(|db| {
                let store = Store::open(&db.url, 2)?;
                Ok((db, store))
            })
            .collect()
    }

    #[test]
    fn the_three_examples_are_accepted_and_stored() -> TestResult {
        for (db, store) in stores("hl7_examples")? {
            for raw in [ADT_A01, ORU_R01, RDE_O11] {
                let ack = ingest_message(store.pool(), raw, &cfg(), NOW)?;
                assert_eq!(
                    (ack.code, ack.duplicate, ack.reason.as_deref()),
                    (AckCode::AA, false, None),
                    "{}",
                    db.label
                );
            }
            let mut c = store.conn()?;
            assert_eq!(
                hl7::patients_by_nhs(&mut c, "9990000018")?.len(),
                1,
                "{}: the ORU does not add a second row",
                db.label
            );
            let visits = hl7::visits_by_nhs(&mut c, "9990000018")?;
            assert_eq!(
                (
                    visits[0].visit_number.as_str(),
                    visits[0].admit_time.as_str()
                ),
                ("V998877", "2026-11-01T09:25:00Z")
            );
            assert_eq!(hl7::allergies_by_nhs(&mut c, "9990000018")?.len(), 1);
            assert_eq!(
                hl7::shown_observations_by_nhs(&mut c, "9990000018")?.len(),
                2
            );
            assert_eq!(
                hl7::shown_medications_by_nhs(&mut c, "9990000018")?[0].status,
                "active"
            );
            assert_eq!(hl7::count_messages(&mut c)?, 3);
            assert!(list_quarantine(store.pool())?.is_empty());
        }
        Ok(())
    }

    #[test]
    fn a_duplicate_control_id_is_acknowledged_aa_and_applied_once() -> TestResult {
        for (db, store) in stores("hl7_dup")? {
            register_jane(&store)?;
            let first = ingest_message(store.pool(), ORU_R01, &cfg(), NOW)?;
            // The resend is the same message, with other line endings.
            let resend = ORU_R01.replace('\r', "\r\n");
            let second = ingest_message(store.pool(), &resend, &cfg(), NOW)?;
            assert_eq!(
                (first.code, first.duplicate),
                (AckCode::AA, false),
                "{}",
                db.label
            );
            assert_eq!(
                (second.code, second.duplicate),
                (AckCode::AA, true),
                "{}",
                db.label
            );
            assert!(second.to_hl7("SCR").contains("MSA|AA|RXK000124\r"));
            let mut c = store.conn()?;
            assert_eq!(
                hl7::shown_observations_by_nhs(&mut c, "9990000018")?.len(),
                2
            );
            assert_eq!(
                hl7::count_messages(&mut c)?,
                3,
                "{}: the resend is logged (after the ADT)",
                db.label
            );
            // The same control id from another facility is another message.
            let other = ingest_message(
                store.pool(),
                &ORU_R01.replace("|LAB|RXK|", "|LAB|RYW|"),
                &cfg(),
                NOW,
            )?;
            assert!(!other.duplicate);
        }
        Ok(())
    }

    #[test]
    fn item1_a_reused_control_id_with_other_content_is_ae_and_quarantined_never_a_silent_aa(
    ) -> TestResult {
        for (db, store) in stores("hl7_reused_id")? {
            register_jane(&store)?;
            // Someone sent the control id first; the genuine message then arrives.
            let first = ingest_message(store.pool(), ORU_R01, &cfg(), NOW)?;
            let genuine = ORU_R01.replace("|5.9|", "|9.9|");
            let second = ingest_message(store.pool(), &genuine, &cfg(), NOW)?;
            assert_eq!(first.code, AckCode::AA, "{}", db.label);
            assert_eq!(
                (second.code, second.duplicate, second.error_kind),
                (AckCode::AE, false, Some(ErrorKind::ControlIdReused)),
                "{}",
                db.label
            );
            assert!(second.to_hl7("SCR").contains("ERR|^^^205&"), "{}", db.label);
            let mut c = store.conn()?;
            let obs = hl7::shown_observations_by_nhs(&mut c, "9990000018")?;
            assert!(
                obs.iter().any(|o| o.resource.contains("5.9"))
                    && !obs.iter().any(|o| o.resource.contains("9.9")),
                "{}: not applied",
                db.label
            );
            let q = list_quarantine(store.pool())?;
            assert_eq!(q.len(), 1, "{}: kept for review", db.label);
            assert_eq!(q[0].raw, genuine);
            assert_eq!(q[0].error_kind, Some(ErrorKind::ControlIdReused));
        }
        Ok(())
    }

    fn peer(address: &str) -> Origin {
        Origin {
            address: address.parse().unwrap(),
            certificate: None,
        }
    }

    fn rxk_from_localhost(cap: u64) -> Senders {
        Senders {
            allowed: vec![crate::senders::AllowedSender {
                facility: "RXK".into(),
                addresses: vec!["127.0.0.1".parse().unwrap()],
                certificate: None,
            }],
            quarantine_cap: cap,
        }
    }

    #[test]
    fn item1_a_facility_the_connection_may_not_send_for_is_ar_and_quarantined() -> TestResult {
        for (db, store) in stores("hl7_sender")? {
            register_jane(&store)?;
            let senders = rxk_from_localhost(100);
            // From an address no sender is bound to.
            let stranger = receive(
                store.pool(),
                &peer("192.0.2.7"),
                &senders,
                ORU_R01,
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (stranger.code, stranger.error_kind),
                (AckCode::AR, Some(ErrorKind::SenderNotAllowed)),
                "{}",
                db.label
            );
            // From RXK's address, claiming to be TAJ (configured in hl7.facilities).
            let spoof = receive(
                store.pool(),
                &peer("127.0.0.1"),
                &senders,
                &ORU_R01.replace("|LAB|RXK|", "|LAB|TAJ|"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (spoof.code, spoof.error_kind),
                (AckCode::AR, Some(ErrorKind::SenderNotAllowed)),
                "{}",
                db.label
            );
            let mut c = store.conn()?;
            assert!(hl7::shown_observations_by_nhs(&mut c, "9990000018")?.is_empty());
            let q = list_quarantine(store.pool())?;
            assert_eq!(q.len(), 2, "{}: both kept for review", db.label);
            // The genuine sender is applied, and its control id was not burnt by the spoofs.
            let genuine = receive(
                store.pool(),
                &peer("127.0.0.1"),
                &senders,
                ORU_R01,
                &cfg(),
                NOW,
            )?;
            assert_eq!((genuine.code, genuine.duplicate), (AckCode::AA, false));
        }
        Ok(())
    }

    #[test]
    fn item1_the_quarantine_is_capped_per_connection() -> TestResult {
        for (db, store) in stores("hl7_cap")? {
            let senders = rxk_from_localhost(3);
            let garbage = |i: usize| format!("NOT HL7 {i}");
            for i in 0..3 {
                let ack = receive(
                    store.pool(),
                    &peer("192.0.2.9"),
                    &senders,
                    &garbage(i),
                    &cfg(),
                    NOW,
                )?;
                assert!(ack.message_id.is_some(), "{}: kept", db.label);
            }
            let over = receive(
                store.pool(),
                &peer("192.0.2.9"),
                &senders,
                &garbage(4),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (over.code, over.error_kind, over.message_id),
                (AckCode::AR, Some(ErrorKind::QuarantineFull), None),
                "{}",
                db.label
            );
            assert_eq!(list_quarantine(store.pool())?.len(), 3, "{}", db.label);
            // Another connection is not affected by the first one's flood.
            let other = receive(
                store.pool(),
                &peer("127.0.0.1"),
                &senders,
                &garbage(5),
                &cfg(),
                NOW,
            )?;
            assert!(other.message_id.is_some(), "{}", db.label);
        }
        Ok(())
    }

    #[test]
    fn a_correction_replaces_the_value_and_keeps_the_id() -> TestResult {
        for (db, store) in stores("hl7_correct")? {
            register_jane(&store)?;
            ingest_message(store.pool(), ORU_R01, &cfg(), NOW)?;
            let mut c = store.conn()?;
            let before = hl7::shown_observations_by_nhs(&mut c, "9990000018")?;
            let corrected = ORU_R01
                .replace("RXK000124", "RXK000200")
                .replace("20261101120000", "20261101130000")
                .replace(
                    "OBX|2|NM|2823-3^Potassium^LN||5.9|mmol/L|3.5-5.3|H|||F",
                    "OBX|2|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.3|N|||C",
                );
            assert_eq!(
                ingest_message(store.pool(), &corrected, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let after = hl7::shown_observations_by_nhs(&mut c, "9990000018")?;
            assert_eq!(after.len(), 2, "{}", db.label);
            let k_before = before
                .iter()
                .find(|o| o.code == "2823-3^LN")
                .ok_or("no K")?;
            let k_after = after.iter().find(|o| o.code == "2823-3^LN").ok_or("no K")?;
            assert_eq!(
                k_before.id, k_after.id,
                "{}: a correction keeps the row id",
                db.label
            );
            assert_eq!(k_after.status, "corrected");
            let r: Value = serde_json::from_str(&k_after.resource)?;
            assert_eq!(r["valueQuantity"]["value"], json!(4.1));
            assert_eq!(r["status"], "corrected");
            // An older message arriving late does not undo the correction.
            let late = ORU_R01
                .replace("RXK000124", "RXK000100")
                .replace("20261101120000", "20261101115900");
            ingest_message(store.pool(), &late, &cfg(), NOW)?;
            let k = hl7::observation_by_id(&mut c, k_after.id)?.ok_or("gone")?;
            assert_eq!(k.status, "corrected", "{}", db.label);
        }
        Ok(())
    }

    #[test]
    fn a_cancelled_result_is_no_longer_shown() -> TestResult {
        for (db, store) in stores("hl7_cancel")? {
            register_jane(&store)?;
            ingest_message(store.pool(), ORU_R01, &cfg(), NOW)?;
            let cancel = ORU_R01
                .replace("RXK000124", "RXK000201")
                .replace("20261101120000", "20261101140000")
                .replace("|5.9|mmol/L|3.5-5.3|H|||F|", "|||||||X|");
            assert_eq!(
                ingest_message(store.pool(), &cancel, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let mut c = store.conn()?;
            let shown = hl7::shown_observations_by_nhs(&mut c, "9990000018")?;
            assert_eq!(
                shown.iter().map(|o| o.code.as_str()).collect::<Vec<_>>(),
                ["2951-2^LN"],
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn an_invalid_nhs_number_is_ae_and_quarantined() -> TestResult {
        for (db, store) in stores("hl7_nhs")? {
            let bad = ADT_A01.replace("9990000018", "9990000017");
            let ack = ingest_message(store.pool(), &bad, &cfg(), NOW)?;
            assert_eq!(
                (ack.code, ack.error_kind),
                (AckCode::AE, Some(ErrorKind::NhsNumber)),
                "{}",
                db.label
            );
            let text = ack.to_hl7("SCR");
            assert!(text.contains("MSA|AE|RXK000123|"), "{text}");
            assert!(text.contains("\rERR|^^^102&"), "{text}");
            let q = list_quarantine(store.pool())?;
            assert_eq!(q.len(), 1);
            assert_eq!(
                (q[0].code, q[0].error_kind, q[0].raw.as_str()),
                (AckCode::AE, Some(ErrorKind::NhsNumber), bad.as_str())
            );
            let mut c = store.conn()?;
            assert!(hl7::patients_by_nhs(&mut c, "9990000017")?.is_empty());
            // Replaying unchanged fails again and counts the attempt.
            let again = replay(store.pool(), q[0].id, &cfg(), "2026-11-06T00:00:00Z")?;
            assert_eq!((again.code, again.message_id), (AckCode::AE, Some(q[0].id)));
            assert_eq!(list_quarantine(store.pool())?[0].attempts, 2);
        }
        Ok(())
    }

    #[test]
    fn an_unknown_facility_is_ar_quarantined_and_replayable_once_configured() -> TestResult {
        for (db, store) in stores("hl7_facility")? {
            let from_rxl = ADT_A01.replace("|PAS|RXK|", "|PAS|RXL|");
            let ack = ingest_message(store.pool(), &from_rxl, &cfg(), NOW)?;
            assert_eq!(
                (ack.code, ack.error_kind),
                (AckCode::AR, Some(ErrorKind::UnknownFacility)),
                "{}",
                db.label
            );
            let q = list_quarantine(store.pool())?;
            assert_eq!(
                (q.len(), q[0].facility.as_str(), q[0].code),
                (1, "RXL", AckCode::AR)
            );
            let mut wider = cfg();
            wider.facilities.push("RXL".into());
            let replayed = replay(store.pool(), q[0].id, &wider, NOW)?;
            assert_eq!(replayed.code, AckCode::AA, "{}", db.label);
            assert!(list_quarantine(store.pool())?.is_empty());
            assert!(matches!(
                replay(store.pool(), q[0].id, &wider, NOW),
                Err(StoreError::NotFound { .. })
            ));
            let mut c = store.conn()?;
            assert_eq!(
                hl7::patients_by_nhs(&mut c, "9990000018")?[0].facility,
                "RXL"
            );
        }
        Ok(())
    }

    #[test]
    fn a_wrong_version_is_ar() -> TestResult {
        for (db, store) in stores("hl7_version")? {
            let ack = ingest_message(
                store.pool(),
                &ADT_A01.replace("|P|2.4", "|P|2.3"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (ack.code, ack.error_kind),
                (AckCode::AR, Some(ErrorKind::UnsupportedVersion)),
                "{}",
                db.label
            );
            assert!(ack.to_hl7("SCR").contains("ERR|^^^203&"));
            assert_eq!(list_quarantine(store.pool())?.len(), 1);
        }
        Ok(())
    }

    #[test]
    fn garbage_is_ar_and_kept() -> TestResult {
        for (db, store) in stores("hl7_garbage")? {
            let ack = ingest_message(store.pool(), "this is not HL7 at all", &cfg(), NOW)?;
            assert_eq!(
                (ack.code, ack.error_kind, ack.control_id.as_str()),
                (AckCode::AR, Some(ErrorKind::Unparseable), ""),
                "{}",
                db.label
            );
            assert!(ack.to_hl7("SCR").contains("MSA|AR||"));
            // A valid MSH followed by junk still echoes the control id.
            let ack = ingest_message(
                store.pool(),
                &format!("{ADT_A01}not a segment\r"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (ack.code, ack.control_id.as_str()),
                (AckCode::AR, "RXK000123")
            );
            let q = list_quarantine(store.pool())?;
            assert_eq!(q.len(), 2);
            assert_eq!(q[0].raw, "this is not HL7 at all");
        }
        Ok(())
    }

    #[test]
    fn an_unsupported_message_type_is_ar() -> TestResult {
        for (db, store) in stores("hl7_type")? {
            let ack = ingest_message(
                store.pool(),
                &ADT_A01.replace("ADT^A01", "ADT^A40"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (ack.code, ack.error_kind),
                (AckCode::AR, Some(ErrorKind::UnsupportedType)),
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn results_in_a_gum_visit_are_sensitive() -> TestResult {
        for (db, store) in stores("hl7_gum")? {
            // The visit is at the sexual health clinic; the result names the visit only.
            let adt = with_field(&ADT_A01.replace("V998877", "V5550001"), "PV1", 10, "GUM");
            assert_eq!(
                ingest_message(store.pool(), &adt, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let oru = with_field(
                &ORU_R01.replacen("OBR|", "PV1|1|O\rOBR|", 1),
                "PV1",
                19,
                "V5550001",
            );
            assert_eq!(
                ingest_message(store.pool(), &oru, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let mut c = store.conn()?;
            let obs = hl7::shown_observations_by_nhs(&mut c, "9990000018")?;
            assert_eq!(obs.len(), 2);
            assert!(obs.iter().all(|o| o.sensitive == 1), "{}", db.label);
            assert!(hl7::allergies_by_nhs(&mut c, "9990000018")?
                .iter()
                .all(|a| a.sensitive == 1));
            assert!(hl7::visits_by_nhs(&mut c, "9990000018")?[0].sensitive == 1);
            // An ordinary result for the same patient is not.
            let plain = ORU_R01
                .replace("RXK000124", "RXK000300")
                .replace("L556677", "L999");
            ingest_message(store.pool(), &plain, &cfg(), NOW)?;
            let plain_rows: Vec<_> = hl7::shown_observations_by_nhs(&mut c, "9990000018")?
                .into_iter()
                .filter(|o| o.filler_order == "L999")
                .collect();
            assert!(plain_rows.iter().all(|o| o.sensitive == 0) && plain_rows.len() == 2);
        }
        Ok(())
    }

    #[test]
    fn a_discharge_closes_the_visit_and_a_dc_stops_the_medication() -> TestResult {
        for (db, store) in stores("hl7_close")? {
            ingest_message(store.pool(), ADT_A01, &cfg(), NOW)?;
            let a03 = with_field(
                &ADT_A01
                    .replace("ADT^A01", "ADT^A03")
                    .replace("RXK000123", "RXK000400")
                    .replace("20261101093000||", "20261104100000||"),
                "PV1",
                45,
                "20261104093000",
            );
            assert_eq!(
                ingest_message(store.pool(), &a03, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let mut c = store.conn()?;
            let v = &hl7::visits_by_nhs(&mut c, "9990000018")?[0];
            assert_eq!(
                (v.admit_time.as_str(), v.discharge_time.as_deref()),
                ("2026-11-01T09:25:00Z", Some("2026-11-04T09:30:00Z")),
                "{}",
                db.label
            );

            ingest_message(store.pool(), RDE_O11, &cfg(), NOW)?;
            let dc = "MSH|^~\\&|EPMA|RXK|SCR|SCR|20261104160000||RDE^O11|RXK000401|P|2.4\rPID|1||9990000018^^^NHS^NH\rORC|DC|RX778899|||||||20261104155500\r";
            assert_eq!(
                ingest_message(store.pool(), dc, &cfg(), NOW)?.code,
                AckCode::AA
            );
            let m = &hl7::shown_medications_by_nhs(&mut c, "9990000018")?[0];
            let r: Value = serde_json::from_str(&m.resource)?;
            assert_eq!(
                (m.status.as_str(), r["status"].as_str()),
                ("stopped", Some("stopped"))
            );
            assert_eq!(
                r["effectivePeriod"],
                json!({"start": "2026-11-03T15:55:00Z", "end": "2026-11-04T15:55:00Z"})
            );
            // Discontinuing an order never seen is an application error.
            let unknown = dc
                .replace("RX778899", "RX000001")
                .replace("RXK000401", "RXK000402");
            assert_eq!(
                ingest_message(store.pool(), &unknown, &cfg(), NOW)?.error_kind,
                Some(ErrorKind::Conflict)
            );
        }
        Ok(())
    }

    #[test]
    fn item10_a_result_for_an_unknown_patient_is_ae_quarantined_and_replayable() -> TestResult {
        for (db, store) in stores("hl7_unknown_patient")? {
            let ack = ingest_message(store.pool(), ORU_R01, &cfg(), NOW)?;
            assert_eq!(
                (ack.code, ack.error_kind),
                (AckCode::AE, Some(ErrorKind::UnknownPatient)),
                "{}",
                db.label
            );
            let text = ack.to_hl7("SCR");
            assert!(text.contains("MSA|AE|RXK000124|"), "{text}");
            assert!(text.contains("\rERR|^^^204&"), "{text}");
            let reason = ack.reason.clone().unwrap_or_default();
            assert!(reason.contains("unknown"), "{reason}");
            for patient_data in ["9990000018", "SMITH", "JANE", "19700102"] {
                assert!(
                    !text.contains(patient_data),
                    "no patient data in the ACK: {text}"
                );
            }
            let q = list_quarantine(store.pool())?;
            assert_eq!(
                (q.len(), q[0].code, q[0].error_kind, q[0].raw.as_str()),
                (1, AckCode::AE, Some(ErrorKind::UnknownPatient), ORU_R01),
                "{}",
                db.label
            );
            let mut c = store.conn()?;
            assert!(hl7::patients_by_nhs(&mut c, "9990000018")?.is_empty());
            assert!(hl7::shown_observations_by_nhs(&mut c, "9990000018")?.is_empty());
            // Once the patient's ADT has arrived, the replay is applied.
            register_jane(&store)?;
            let replayed = replay(store.pool(), q[0].id, &cfg(), NOW)?;
            assert_eq!(replayed.code, AckCode::AA, "{}", db.label);
            assert_eq!(
                hl7::shown_observations_by_nhs(&mut c, "9990000018")?.len(),
                2
            );
            assert!(list_quarantine(store.pool())?.is_empty());
            // Known through another facility's ADT is known.
            let other = ORU_R01
                .replace("|LAB|RXK|", "|LAB|RYW|")
                .replace("RXK000124", "RYW000001");
            assert_eq!(
                ingest_message(store.pool(), &other, &cfg(), NOW)?.code,
                AckCode::AA
            );
        }
        Ok(())
    }

    #[test]
    fn item10_only_results_need_a_known_patient() -> TestResult {
        for (db, store) in stores("hl7_order_no_adt")? {
            // hl7v2-acute.md names results only: an order for a new patient is applied.
            let ack = ingest_message(store.pool(), RDE_O11, &cfg(), NOW)?;
            assert_eq!(ack.code, AckCode::AA, "{}", db.label);
            let mut c = store.conn()?;
            let p = hl7::patients_by_nhs(&mut c, "9990000018")?;
            assert_eq!((p.len(), p[0].from_adt), (1, 0));
            // A later ADT replaces the sparse demographics even with an older message time.
            ingest_message(
                store.pool(),
                &ADT_A01.replace("20261101093000||ADT", "20261001093000||ADT"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                hl7::patients_by_nhs(&mut c, "9990000018")?[0]
                    .local_id
                    .as_deref(),
                Some("K1234567")
            );
        }
        Ok(())
    }

    #[test]
    fn concurrent_resends_are_applied_once() -> TestResult {
        for (db, store) in stores("hl7_race")? {
            register_jane(&store)?;
            let acks: Vec<Ack> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| ingest_message(store.pool(), ORU_R01, &cfg(), NOW)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| "thread panicked".to_owned())?
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, String>>()
            })?;
            assert!(acks.iter().all(|a| a.code == AckCode::AA), "{}", db.label);
            assert_eq!(
                acks.iter().filter(|a| !a.duplicate).count(),
                1,
                "{}",
                db.label
            );
            let mut c = store.conn()?;
            assert_eq!(
                hl7::shown_observations_by_nhs(&mut c, "9990000018")?.len(),
                2
            );
            assert_eq!(
                hl7::count_messages(&mut c)?,
                5,
                "the ADT and the four resends"
            );
        }
        Ok(())
    }

    #[test]
    fn a_file_of_messages_ingests_in_order() -> TestResult {
        for (db, store) in stores("hl7_file")? {
            let file = format!(
                "{}\n\n{}\n",
                ADT_A01.replace('\r', "\n"),
                ORU_R01.replace('\r', "\n")
            );
            let codes: Vec<AckCode> = split_messages(&file)
                .iter()
                .map(|m| ingest_message(store.pool(), m, &cfg(), NOW).map(|a| a.code))
                .collect::<Result<_, _>>()?;
            assert_eq!(codes, [AckCode::AA, AckCode::AA], "{}", db.label);
        }
        Ok(())
    }

    #[test]
    fn the_sending_facility_is_stored_in_upper_case() -> TestResult {
        for (db, store) in stores("hl7_case")? {
            let ack = ingest_message(
                store.pool(),
                &ADT_A01.replace("|PAS|RXK|", "|PAS|rxk|"),
                &cfg(),
                NOW,
            )?;
            assert_eq!(
                (ack.code, ack.sending_facility.as_str()),
                (AckCode::AA, "RXK"),
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn the_ack_swaps_sender_and_receiver_and_echoes_the_control_id() {
        let ack = Ack {
            code: AckCode::AA,
            control_id: "RXK000123".into(),
            reason: None,
            duplicate: false,
            error_kind: None,
            message_id: Some(1),
            sending_application: "PAS".into(),
            sending_facility: "RXK".into(),
            receiving_facility: "SCR".into(),
            trigger: "A01".into(),
            time: "20261105100000".into(),
        };
        assert_eq!(ack.to_hl7("SCR"), "MSH|^~\\&|SCR|SCR|PAS|RXK|20261105100000||ACK^A01^ACK|ARXK000123|P|2.4\rMSA|AA|RXK000123\r");
        let rejected = Ack {
            code: AckCode::AR,
            reason: Some("bad | value".into()),
            error_kind: Some(ErrorKind::UnsupportedType),
            ..ack
        };
        let text = rejected.to_hl7("SCR");
        assert!(
            text.ends_with(
                "MSA|AR|RXK000123|bad \\F\\ value\rERR|^^^200&bad \\F\\ value&HL70357\r"
            ),
            "{text}"
        );
    }

    #[test]
    fn files_split_into_messages_framed_or_plain() {
        let plain = format!(
            "{}\n\n{}\n{}",
            ADT_A01.replace('\r', "\n"),
            ORU_R01.replace('\r', "\r\n"),
            RDE_O11
        );
        let msgs = split_messages(&plain);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], ADT_A01);
        assert_eq!(msgs[1], ORU_R01);
        assert_eq!(msgs[2], RDE_O11);
        let framed = format!("\u{b}{ADT_A01}\u{1c}\r\u{b}{ORU_R01}\u{1c}\r");
        assert_eq!(
            split_messages(&framed),
            vec![ADT_A01.to_owned(), ORU_R01.to_owned()]
        );
        assert_eq!(split_messages("junk line\nMSH|^~\\&|A\n").len(), 2);
        assert!(split_messages("\n\n").is_empty());
    }
}
