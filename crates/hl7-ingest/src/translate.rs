//! What a message means, decided without the database: its header checks (AR), the patient it
//! is about (AE when there is no valid NHS number), and the FHIR JSON of every record it feeds.
//! The result is a [`Plan`] that `ingest` applies in one transaction.
//!
//! Resources are built without `id` and `meta`: both depend on the configured source name and
//! the row id, and are added when the record is read (`source.rs`). Local identifiers are scoped
//! by the sending trust's ODS code, as hospital numbers are unique only within a trust.

use serde_json::{json, Map, Value};

use scr_fhir::build;
use scr_fhir::systems;

use crate::ingest::{AckCode, Facility, Hl7Config};
use scr_hl7::parser::{Message, Repetition, Segment};
use scr_hl7::time::Hl7Time;
use scr_hl7::ErrorKind;

const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";

/// Why a message is not applied: AE (understood, not applied) or AR (rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: AckCode,
    pub kind: ErrorKind,
    /// Human-readable; never contains patient data (it goes back to the sender and into logs).
    pub reason: String,
}

impl Rejection {
    pub fn rejected(kind: ErrorKind, reason: impl Into<String>) -> Rejection {
        Rejection {
            code: AckCode::AR,
            kind,
            reason: reason.into(),
        }
    }

    pub fn error(kind: ErrorKind, reason: impl Into<String>) -> Rejection {
        Rejection {
            code: AckCode::AE,
            kind,
            reason: reason.into(),
        }
    }
}

/// The supported messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Adt(AdtEvent),
    Oru,
    Rde,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtEvent {
    /// A01 admit, A04 register, A08 update visit.
    VisitStartOrUpdate,
    /// A03 discharge.
    Discharge,
    /// A28 add person, A31 update person.
    Person,
}

/// MSH fields, as far as they could be read: the ACK echoes them even for a rejected message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    pub facility: String,
    pub receiving_facility: String,
    pub control_id: String,
    /// `ADT^A01`.
    pub message_type: String,
    /// MSH-9.2, for the ACK's MSH-9.
    pub trigger: String,
    /// MSH-7 as a FHIR dateTime.
    pub message_time: Option<String>,
    /// MSH-7 as a fixed-width UTC instant (falls back to the receipt time), for "latest wins".
    pub source_time: String,
}

/// Reads the header of a parsed message. MSH-7 without an offset is the sending facility's local
/// time (`cfg`'s zone for MSH-4).
pub fn header(msg: &Message, received_at: &str, cfg: &Hl7Config) -> Header {
    let msh = msg.msh();
    // ODS codes are upper case; the stored facility is what the policy compares with callers.
    let facility = first_non_empty(&[msh.component(4, 1), msh.component(4, 2)])
        .trim()
        .to_ascii_uppercase();
    let zone = cfg.time_zone(&facility);
    let time = Hl7Time::parse(msh.component(7, 1)).map(|t| t.in_zone(&zone));
    let (t1, t2) = (msh.component(9, 1).trim(), msh.component(9, 2).trim());
    Header {
        sending_application: msh.component(3, 1).to_owned(),
        facility,
        receiving_facility: msh.component(6, 1).to_owned(),
        control_id: msh.get(10).trim().to_owned(),
        message_type: if t2.is_empty() {
            t1.to_owned()
        } else {
            format!("{t1}^{t2}")
        },
        trigger: t2.to_owned(),
        message_time: time.as_ref().map(Hl7Time::fhir_date_time),
        source_time: time.map_or_else(|| utc_from_iso(received_at), |t| t.utc_instant()),
    }
}

/// The receipt time as a fixed-width UTC instant (`YYYY-MM-DDThh:mm:ssZ`, fractions and offset
/// dropped), when MSH-7 is missing.
fn utc_from_iso(iso: &str) -> String {
    let iso = iso.trim();
    match iso.get(..19) {
        Some(stem) if build::date_time(stem).is_some() => format!("{stem}Z"),
        _ => build::instant(iso).unwrap_or_else(|| iso.to_owned()),
    }
}

/// The header checks that reject a message outright (AR).
pub fn check_header(
    msg: &Message,
    header: &Header,
    cfg: &Hl7Config,
) -> Result<MessageKind, Rejection> {
    if cfg.facility(&header.facility).is_none() {
        return Err(Rejection::rejected(
            ErrorKind::UnknownFacility,
            format!(
                "sending facility '{}' (MSH-4) is not configured",
                header.facility
            ),
        ));
    }
    let version = msg.msh().component(12, 1).trim();
    if version != "2.4" {
        return Err(Rejection::rejected(
            ErrorKind::UnsupportedVersion,
            format!("version '{version}' (MSH-12) is not supported; send 2.4"),
        ));
    }
    let msh = msg.msh();
    let kind = match (msh.component(9, 1).trim(), msh.component(9, 2).trim()) {
        ("ADT", "A01" | "A04" | "A08") => MessageKind::Adt(AdtEvent::VisitStartOrUpdate),
        ("ADT", "A03") => MessageKind::Adt(AdtEvent::Discharge),
        ("ADT", "A28" | "A31") => MessageKind::Adt(AdtEvent::Person),
        ("ORU", "R01") => MessageKind::Oru,
        ("RDE", "O11") => MessageKind::Rde,
        _ => {
            return Err(Rejection::rejected(
                ErrorKind::UnsupportedType,
                format!(
                    "message type '{}' (MSH-9) is not supported",
                    header.message_type
                ),
            ))
        }
    };
    if header.control_id.is_empty() {
        return Err(Rejection::rejected(
            ErrorKind::MissingField,
            "MSH-10 message control id is empty",
        ));
    }
    Ok(kind)
}

/// Demographics from PID (and PD1).
#[derive(Debug, Clone, PartialEq)]
pub struct PatientPlan {
    /// From an ADT message: replaces older demographics. From a result or order: only fills in a
    /// facility that has sent none.
    pub from_adt: bool,
    pub local_id: Option<String>,
    pub family_upper: Option<String>,
    pub birth_date: Option<String>,
    /// FHIR Patient without `id` and `meta`.
    pub resource: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitPlan {
    pub visit_number: String,
    pub patient_class: Option<String>,
    pub location: Option<String>,
    pub service_code: Option<String>,
    pub admit_time: Option<String>,
    pub discharge_time: Option<String>,
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllergyPlan {
    pub allergen_key: String,
    pub sensitive: bool,
    pub resource: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservationPlan {
    pub filler_order: String,
    pub code: String,
    pub sub_id: String,
    pub status: String,
    pub cancelled: bool,
    pub sensitive: bool,
    pub resource: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    /// NW, RP, XO, SC: the medication is (still) active.
    Active,
    /// DC, OD: discontinued.
    Stop,
    /// CA: cancelled before it started; no longer shown.
    Cancel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MedicationPlan {
    pub placer_order: String,
    pub action: OrderAction,
    pub sensitive: bool,
    /// Built from RXE when the message has one.
    pub resource: Option<Value>,
    /// ORC-9 for a stop: the end of the medication period.
    pub end_time: Option<String>,
}

/// Everything one accepted message does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub nhs_number: String,
    /// A result (ORU^R01): applied only for a patient the facade already knows; otherwise `AE`
    /// and quarantined (`hl7v2-acute.md`: "unknown patient for a result").
    pub needs_known_patient: bool,
    pub patient: PatientPlan,
    pub visit: Option<VisitPlan>,
    /// PV1-19 of a result or order, to find the visit it belongs to (a sensitive visit makes it
    /// sensitive).
    pub visit_ref: Option<String>,
    pub allergies: Vec<AllergyPlan>,
    pub observations: Vec<ObservationPlan>,
    pub medications: Vec<MedicationPlan>,
}

/// Translates an accepted message (header checked) into its plan, or an AE.
pub fn plan(
    msg: &Message,
    kind: MessageKind,
    header: &Header,
    cfg: &Hl7Config,
) -> Result<Plan, Rejection> {
    let pids: Vec<&Segment> = msg.segments_named("PID").collect();
    let pid = match pids.as_slice() {
        [] => {
            return Err(Rejection::error(
                ErrorKind::MissingField,
                "the message has no PID segment",
            ))
        }
        [one] => *one,
        _ => {
            return Err(Rejection::error(
                ErrorKind::InvalidValue,
                "more than one patient (PID) in one message is not supported",
            ))
        }
    };
    let nhs_number = nhs_number(pid)?;
    let facility = cfg
        .facility(&header.facility)
        .cloned()
        .unwrap_or_else(|| Facility::new(&header.facility));
    let ctx = Context {
        facility: &header.facility,
        nhs_number: &nhs_number,
        header,
        cfg,
        zone: &facility.time_zone,
        local_code_system: &facility.local_code_system,
    };
    let pv1 = msg.segment("PV1");
    let service = pv1
        .map(|p| p.component(10, 1).trim())
        .filter(|s| !s.is_empty());
    let service_sensitive = service.is_some_and(|s| cfg.is_sensitive_service(s));
    let visit_ref = pv1
        .map(|p| p.component(19, 1).trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);

    let mut plan = Plan {
        patient: patient(msg, pid, &ctx, matches!(kind, MessageKind::Adt(_))),
        nhs_number: nhs_number.clone(),
        needs_known_patient: kind == MessageKind::Oru,
        visit: None,
        visit_ref: None,
        allergies: Vec::new(),
        observations: Vec::new(),
        medications: Vec::new(),
    };
    match kind {
        MessageKind::Adt(event) => {
            if let (Some(pv1), AdtEvent::VisitStartOrUpdate | AdtEvent::Discharge) = (pv1, event) {
                plan.visit = visit(msg, pv1, event, &ctx, service_sensitive);
            }
            for al1 in msg.segments_named("AL1") {
                plan.allergies.push(allergy(al1, &ctx, service_sensitive)?);
            }
        }
        MessageKind::Oru => {
            plan.visit_ref = visit_ref;
            plan.observations = observations(msg, &ctx, service_sensitive)?;
        }
        MessageKind::Rde => {
            plan.visit_ref = visit_ref;
            plan.medications = medications(msg, &ctx, pv1, service_sensitive)?;
        }
    }
    Ok(plan)
}

struct Context<'a> {
    facility: &'a str,
    nhs_number: &'a str,
    header: &'a Header,
    cfg: &'a Hl7Config,
    /// The sending facility's zone: its local times are read in it.
    zone: &'a jiff::tz::TimeZone,
    /// The sending facility's local code system.
    local_code_system: &'a str,
}

impl Context<'_> {
    fn subject(&self) -> Value {
        build::patient_reference(self.nhs_number)
    }

    /// An HL7 timestamp, read in the facility's zone when it carries no offset.
    fn time(&self, value: &str) -> Option<Hl7Time> {
        Hl7Time::parse(value).map(|t| t.in_zone(self.zone))
    }

    /// A coded element as a CodeableConcept (see [`coded`]).
    fn coded(&self, ce: &Repetition) -> Value {
        coded(ce, self.local_code_system)
    }
}

/// The NHS number: the PID-3 repetition with assigning authority `NHS` and type `NH`, which must
/// pass the Modulus 11 check.
fn nhs_number(pid: &Segment) -> Result<String, Rejection> {
    let rep = pid
        .repetitions(3)
        .iter()
        .find(|r| {
            r.component(4).trim().eq_ignore_ascii_case("NHS")
                && r.component(5).trim().eq_ignore_ascii_case("NH")
        })
        .ok_or_else(|| {
            Rejection::error(
                ErrorKind::NhsNumber,
                "PID-3 has no NHS number (assigning authority NHS, type NH)",
            )
        })?;
    let value: String = rep
        .component(1)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if scr_fhir::nhs_number::is_valid(&value) {
        Ok(value)
    } else {
        Err(Rejection::error(
            ErrorKind::NhsNumber,
            "the NHS number in PID-3 is not valid (ten digits, Modulus 11)",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Patient

fn patient(msg: &Message, pid: &Segment, ctx: &Context<'_>, from_adt: bool) -> PatientPlan {
    let local_id = pid
        .repetitions(3)
        .iter()
        .find(|r| r.component(5).trim().eq_ignore_ascii_case("MR"))
        .map(|r| r.component(1).trim().to_owned())
        .filter(|v| !v.is_empty());
    let mut identifiers = vec![build::nhs_number_identifier(ctx.nhs_number)];
    if let Some(mr) = &local_id {
        let mut id = build::local_identifier(ctx.facility, mr);
        id["type"] = json!({"coding": [build::coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", Some("Medical record number"))]});
        identifiers.push(id);
    }
    let names: Vec<Value> = pid
        .repetitions(5)
        .iter()
        .filter(|r| !r.is_empty())
        .map(human_name)
        .collect();
    let family = pid
        .repetitions(5)
        .first()
        .map(|r| r.component(1).trim().to_owned())
        .filter(|f| !f.is_empty());
    let birth = ctx.time(pid.component(7, 1));
    let gender = match pid.get(8).trim().to_ascii_uppercase().as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        _ => None,
    };
    let mut telecom: Vec<Value> = pid
        .repetitions(13)
        .iter()
        .filter_map(|r| contact_point(r, None))
        .collect();
    telecom.extend(
        pid.repetitions(14)
            .iter()
            .filter_map(|r| contact_point(r, Some("work"))),
    );
    let mut resource = json!({
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": names,
        "telecom": telecom,
        "gender": gender,
        "birthDate": birth.as_ref().map(Hl7Time::fhir_date),
        "address": pid.repetitions(11).iter().filter(|r| !r.is_empty()).map(address).collect::<Vec<_>>(),
    });
    if let Some(death) = ctx.time(pid.component(29, 1)) {
        resource["deceasedDateTime"] = death.fhir_date_time().into();
    } else if pid.get(30).trim().eq_ignore_ascii_case("Y") {
        resource["deceasedBoolean"] = true.into();
    }
    if let Some(gp) = msg
        .segment("PD1")
        .and_then(|pd1| general_practitioner(pd1.field(3).first()))
    {
        resource["generalPractitioner"] = json!([gp]);
    }
    build::prune(&mut resource);
    PatientPlan {
        from_adt,
        local_id,
        family_upper: family.map(|f| f.to_uppercase()),
        birth_date: birth.map(|b| b.fhir_date()).filter(|d| d.len() == 10),
        resource,
    }
}

/// XPN: `family^given^middle^suffix^prefix^degree^type`.
fn human_name(r: &Repetition) -> Value {
    let given: Vec<&str> = [r.component(2), r.component(3)]
        .into_iter()
        .flat_map(|g| g.split_whitespace())
        .collect();
    let name_use = match r.component(7).trim() {
        "" | "L" => Some("official"),
        "M" => Some("maiden"),
        "N" => Some("nickname"),
        "A" | "D" => Some("usual"),
        _ => None,
    };
    let mut name = json!({
        "use": name_use,
        "family": r.subcomponent(1, 1).trim(),
        "given": given,
        "prefix": [r.component(5).trim()],
        "suffix": [r.component(4).trim()],
    });
    build::prune(&mut name);
    name
}

/// XAD: `street^other^city^county^postcode^country^type`.
fn address(r: &Repetition) -> Value {
    let use_ = match r.component(7).trim() {
        "H" => Some("home"),
        "B" | "O" => Some("work"),
        "C" => Some("temp"),
        "OLD" => Some("old"),
        _ => None,
    };
    let mut a = json!({
        "use": use_,
        "line": [r.subcomponent(1, 1).trim(), r.component(2).trim()],
        "city": r.component(3).trim(),
        "district": r.component(4).trim(),
        "postalCode": r.component(5).trim(),
        "country": r.component(6).trim(),
    });
    build::prune(&mut a);
    a
}

/// XTN: `number^use^equipment^email^country^area^local`. A plain UK number starting `07` is a
/// mobile.
fn contact_point(r: &Repetition, default_use: Option<&str>) -> Option<Value> {
    let equipment = r.component(3).trim().to_ascii_uppercase();
    let email = r.component(4).trim();
    let is_email = equipment == "INTERNET"
        || equipment == "X.400"
        || r.component(2).trim() == "NET"
        || !email.is_empty();
    let value = if is_email && !email.is_empty() {
        email.to_owned()
    } else if !r.component(1).trim().is_empty() {
        r.component(1).trim().to_owned()
    } else {
        format!("{}{}", r.component(6).trim(), r.component(7).trim())
    };
    if value.is_empty() {
        return None;
    }
    let system = if is_email {
        "email"
    } else {
        match equipment.as_str() {
            "FX" => "fax",
            "BP" => "pager",
            _ => "phone",
        }
    };
    let use_ = match (r.component(2).trim(), equipment.as_str()) {
        (_, "CP") => Some("mobile"),
        ("WPN", _) => Some("work"),
        ("PRN" | "ORN" | "VHN", _) => Some("home"),
        _ if system == "phone" && value.replace(' ', "").starts_with("07") => Some("mobile"),
        _ => default_use.or(Some("home")).filter(|_| system != "email"),
    };
    let mut cp = json!({ "system": system, "value": value, "use": use_ });
    build::prune(&mut cp);
    Some(cp)
}

/// PD1-3 (XON): the registered practice, its ODS code in XON-3 (v2.4) or XON-10.
fn general_practitioner(xon: &Repetition) -> Option<Value> {
    let name = Some(xon.component(1).trim()).filter(|n| !n.is_empty());
    let ods = first_non_empty(&[xon.component(3), xon.component(10)]).trim();
    if !ods.is_empty() {
        Some(build::organisation_reference(ods, name))
    } else {
        name.map(|n| json!({ "display": n }))
    }
}

// ---------------------------------------------------------------------------------------------
// Visits

fn visit(
    msg: &Message,
    pv1: &Segment,
    event: AdtEvent,
    ctx: &Context<'_>,
    sensitive: bool,
) -> Option<VisitPlan> {
    let event_time = || {
        let evn = msg.segment("EVN");
        [
            evn.map_or("", |e| e.component(6, 1)),
            evn.map_or("", |e| e.component(2, 1)),
            msg.msh().component(7, 1),
        ]
        .into_iter()
        .find_map(|v| ctx.time(v))
        .map(|t| t.fhir_date_time())
    };
    let admit = ctx.time(pv1.component(44, 1)).map(|t| t.fhir_date_time());
    let discharge = ctx.time(pv1.component(45, 1)).map(|t| t.fhir_date_time());
    let (admit_time, discharge_time) = match event {
        AdtEvent::Discharge => (admit, discharge.or_else(event_time)),
        _ => (
            admit.or_else(|| {
                msg.msh()
                    .component(9, 2)
                    .ne("A08")
                    .then(event_time)
                    .flatten()
            }),
            discharge,
        ),
    };
    let visit_number = match pv1.component(19, 1).trim() {
        "" => format!(
            "{}-{}",
            ctx.nhs_number,
            admit_time.as_deref()?.replace([':', '-', '+', '.'], "")
        ),
        v => v.to_owned(),
    };
    let location = [
        pv1.component(3, 1),
        pv1.component(3, 2),
        pv1.component(3, 3),
    ]
    .into_iter()
    .map(str::trim)
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" / ");
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    Some(VisitPlan {
        visit_number,
        patient_class: non_empty(pv1.get(2)),
        location: non_empty(&location),
        service_code: non_empty(pv1.component(10, 1)),
        admit_time,
        discharge_time,
        sensitive,
    })
}

// ---------------------------------------------------------------------------------------------
// Allergies

fn allergy(
    al1: &Segment,
    ctx: &Context<'_>,
    service_sensitive: bool,
) -> Result<AllergyPlan, Rejection> {
    let allergen = al1.field(3).first();
    let (code, text) = (allergen.component(1).trim(), allergen.component(2).trim());
    if code.is_empty() && text.is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "AL1-3 allergen is empty",
        ));
    }
    let allergen_key = if code.is_empty() {
        format!("text:{}", text.to_uppercase())
    } else {
        format!("{code}^{}", allergen.component(3).trim())
    };
    let category = match al1.component(2, 1).trim().to_ascii_uppercase().as_str() {
        "DA" => Some("medication"),
        "FA" => Some("food"),
        "EA" | "AA" | "PA" | "LA" => Some("environment"),
        _ => None,
    };
    let severity = al1.component(4, 1).trim().to_ascii_uppercase();
    let (criticality, reaction_severity) = match severity.as_str() {
        "SV" => (Some("high"), Some("severe")),
        "MO" => (Some("low"), Some("moderate")),
        "MI" => (Some("low"), Some("mild")),
        "U" => (Some("unable-to-assess"), None),
        _ => (None, None),
    };
    let manifestations: Vec<Value> = al1
        .repetitions(5)
        .iter()
        .map(|r| r.component(1).trim())
        .filter(|t| !t.is_empty())
        .map(build::text_concept)
        .collect();
    let reaction = if manifestations.is_empty() {
        json!([])
    } else {
        json!([{ "manifestation": manifestations, "severity": reaction_severity }])
    };
    let mut resource = json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": { "coding": [build::coding(systems::ALLERGY_CLINICAL, "active", Some("Active"))] },
        "verificationStatus": { "coding": [build::coding(systems::ALLERGY_VERIFICATION, "confirmed", Some("Confirmed"))] },
        "type": "allergy",
        "category": [category],
        "criticality": criticality,
        "code": ctx.coded(allergen),
        "patient": ctx.subject(),
        "onsetDateTime": ctx.time(al1.component(6, 1)).map(|t| t.fhir_date_time()),
        "recordedDate": ctx.header.message_time,
        "recorder": build::organisation_reference(ctx.facility, None),
        "reaction": reaction,
    });
    build::prune(&mut resource);
    Ok(AllergyPlan {
        allergen_key,
        sensitive: service_sensitive || ctx.cfg.is_sensitive_code(code),
        resource,
    })
}

// ---------------------------------------------------------------------------------------------
// Results

fn observations(
    msg: &Message,
    ctx: &Context<'_>,
    service_sensitive: bool,
) -> Result<Vec<ObservationPlan>, Rejection> {
    let mut out = Vec::new();
    let mut obr: Option<&Segment> = None;
    let mut last: Option<usize> = None;
    for seg in msg.segments() {
        match seg.id() {
            "OBR" => {
                obr = Some(seg);
                last = None;
            }
            "OBX" => {
                let order = obr.ok_or_else(|| {
                    Rejection::error(
                        ErrorKind::MissingField,
                        "an OBX segment comes before any OBR",
                    )
                })?;
                out.push(observation(order, seg, ctx, service_sensitive)?);
                last = Some(out.len() - 1);
            }
            "NTE" => {
                if let Some(i) = last {
                    let text = seg
                        .repetitions(3)
                        .iter()
                        .map(|r| r.component(1))
                        .collect::<Vec<_>>()
                        .join("\n");
                    if !text.trim().is_empty() {
                        let notes = &mut out[i].resource["note"];
                        match notes.as_array_mut() {
                            Some(list) => list.push(json!({ "text": text })),
                            None => *notes = json!([{ "text": text }]),
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if obr.is_none() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "the result has no OBR segment",
        ));
    }
    Ok(out)
}

const IMAGING_SECTIONS: [&str; 9] = ["RAD", "CT", "CUS", "NMR", "NMS", "OUS", "RX", "VUS", "XRC"];

fn observation(
    obr: &Segment,
    obx: &Segment,
    ctx: &Context<'_>,
    service_sensitive: bool,
) -> Result<ObservationPlan, Rejection> {
    let filler_order = first_non_empty(&[obr.component(3, 1), obr.component(2, 1)])
        .trim()
        .to_owned();
    if filler_order.is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "OBR-3 filler order number is empty",
        ));
    }
    let id = obx.field(3).first();
    let (code, code_system) = (id.component(1).trim(), id.component(3).trim());
    if code.is_empty() && id.component(2).trim().is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "OBX-3 observation identifier is empty",
        ));
    }
    let code_key = if code.is_empty() {
        format!("text:{}", id.component(2).trim().to_uppercase())
    } else {
        format!("{code}^{code_system}")
    };
    let sub_id = obx.get(4).trim().to_owned();
    let (status, cancelled) = match obx.get(11).trim().to_ascii_uppercase().as_str() {
        "F" => ("final", false),
        "C" => ("corrected", false),
        "P" | "R" | "S" => ("preliminary", false),
        "I" => ("registered", false),
        "X" => ("cancelled", true),
        "D" | "W" => ("entered-in-error", true),
        "" => ("unknown", false),
        other => {
            return Err(Rejection::error(
                ErrorKind::InvalidValue,
                format!("OBX-11 result status '{other}' is not supported"),
            ));
        }
    };
    let section = obr.component(24, 1).trim().to_ascii_uppercase();
    let (category, category_display) = if IMAGING_SECTIONS.contains(&section.as_str()) {
        ("imaging", "Imaging")
    } else {
        ("laboratory", "Laboratory")
    };
    let issued = [obr.component(22, 1), obx.component(19, 1)]
        .into_iter()
        .find_map(|v| ctx.time(v))
        .map(|t| t.fhir_instant());
    let effective = [obx.component(14, 1), obr.component(7, 1)]
        .into_iter()
        .find_map(|v| ctx.time(v))
        .map(|t| t.fhir_date_time());
    // The trust's own key for this result: filler order / test code [/ sub-id].
    let mut local_key = format!(
        "{filler_order}/{}",
        if code.is_empty() {
            id.component(2).trim()
        } else {
            code
        }
    );
    if !sub_id.is_empty() {
        local_key = format!("{local_key}/{sub_id}");
    }
    let mut resource = json!({
        "resourceType": "Observation",
        "identifier": [build::local_identifier(ctx.facility, &local_key)],
        "status": status,
        "category": [{ "coding": [build::coding(systems::OBSERVATION_CATEGORY, category, Some(category_display))] }],
        "code": ctx.coded(id),
        "subject": ctx.subject(),
        "effectiveDateTime": effective.or_else(|| ctx.header.message_time.clone()),
        "issued": issued.or_else(|| ctx.header.message_time.as_deref().and_then(build::instant)),
        "performer": [build::organisation_reference(ctx.facility, None)],
    });
    let units = obx.field(6).first();
    if !cancelled {
        match value(obx, units, ctx)? {
            Some((key, v)) => {
                resource[key] = v;
            }
            None => {
                resource["dataAbsentReason"] = json!({ "coding": [build::coding(DATA_ABSENT_REASON, "unknown", Some("Unknown"))] });
            }
        }
        if let Some(range) = reference_range(obx.get(7), units) {
            resource["referenceRange"] = json!([range]);
        }
        let interpretations: Vec<Value> = obx
            .repetitions(8)
            .iter()
            .map(|r| r.component(1).trim())
            .filter(|f| !f.is_empty())
            .map(interpretation)
            .collect();
        if !interpretations.is_empty() {
            resource["interpretation"] = Value::Array(interpretations);
        }
    }
    build::prune(&mut resource);
    let sensitive = service_sensitive
        || ctx.cfg.is_sensitive_service(&section)
        || ctx.cfg.is_sensitive_code(code)
        || ctx.cfg.is_sensitive_code(obr.component(4, 1).trim());
    Ok(ObservationPlan {
        filler_order,
        code: code_key,
        sub_id,
        status: status.to_owned(),
        cancelled,
        sensitive,
        resource,
    })
}

/// OBX-5 by OBX-2: `(element name, value)`, or `None` for an empty value.
fn value(
    obx: &Segment,
    units: &Repetition,
    ctx: &Context<'_>,
) -> Result<Option<(&'static str, Value)>, Rejection> {
    let reps = obx.repetitions(5);
    if reps.iter().all(Repetition::is_empty) {
        return Ok(None);
    }
    let value_type = obx.get(2).trim().to_ascii_uppercase();
    let first = &reps[0];
    let v = match value_type.as_str() {
        "NM" => {
            let raw = first.component(1).trim();
            let (comparator, number) = decimal(raw).ok_or_else(|| {
                Rejection::error(
                    ErrorKind::InvalidValue,
                    format!(
                        "OBX-5 is not a number although OBX-2 is NM (OBX-3 {})",
                        obx.component(3, 1)
                    ),
                )
            })?;
            ("valueQuantity", quantity(number, comparator, units))
        }
        "SN" => {
            // comparator^number[^separator^number]: only a single number is a quantity.
            let comparator = first.component(1).trim();
            let (sep, second) = (first.component(3).trim(), first.component(4).trim());
            match decimal(first.component(2).trim()) {
                Some((None, number))
                    if sep.is_empty()
                        && second.is_empty()
                        && matches!(comparator, "" | "<" | ">" | "<=" | ">=" | "=") =>
                {
                    (
                        "valueQuantity",
                        quantity(
                            number,
                            Some(comparator).filter(|c| !c.is_empty() && *c != "="),
                            units,
                        ),
                    )
                }
                _ => (
                    "valueString",
                    Value::from(format!(
                        "{comparator}{}{sep}{second}",
                        first.component(2).trim()
                    )),
                ),
            }
        }
        "ST" | "TX" | "FT" => {
            let text = reps
                .iter()
                .map(|r| r.component(1))
                .collect::<Vec<_>>()
                .join("\n");
            ("valueString", Value::from(text))
        }
        "CE" | "CWE" | "CNE" => ("valueCodeableConcept", ctx.coded(first)),
        "DT" | "TS" | "DTM" => {
            let t = ctx.time(first.component(1)).ok_or_else(|| {
                Rejection::error(
                    ErrorKind::InvalidValue,
                    "OBX-5 is not a valid date/time although OBX-2 says so",
                )
            })?;
            ("valueDateTime", Value::from(t.fhir_date_time()))
        }
        other => {
            return Err(Rejection::error(
                ErrorKind::InvalidValue,
                format!("OBX-2 value type '{other}' is not supported"),
            ));
        }
    };
    Ok(Some(v))
}

/// A decimal with an optional comparator (`<5`, `>=90`). The number keeps its JSON form: an
/// integer when written without a decimal point.
fn decimal(raw: &str) -> Option<(Option<&'static str>, Value)> {
    let (comparator, rest) = ["<=", ">=", "<", ">"]
        .into_iter()
        .find_map(|c| raw.strip_prefix(c).map(|r| (Some(c), r.trim())))
        .unwrap_or((None, raw));
    let body = rest.strip_prefix('+').unwrap_or(rest);
    let unsigned = body.strip_prefix('-').unwrap_or(body);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let well_formed = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(unsigned.contains('.') && frac.is_empty() && int.is_empty());
    if !well_formed || unsigned.ends_with('.') && int.is_empty() {
        return None;
    }
    let number = if unsigned.contains('.') {
        serde_json::Number::from_f64(body.parse::<f64>().ok()?)?
    } else {
        serde_json::Number::from(body.parse::<i64>().ok()?)
    };
    Some((comparator, Value::Number(number)))
}

/// A Quantity with the units of OBX-6 (`code^text^system`): UCUM system and code when the unit
/// is UCUM (or a common spelling of a UCUM unit).
fn quantity(number: Value, comparator: Option<&str>, units: &Repetition) -> Value {
    let unit_code = units.component(1).trim();
    let unit_text = first_non_empty(&[units.component(2), unit_code]).trim();
    let mut q = Map::new();
    q.insert("value".into(), number);
    if let Some(c) = comparator {
        q.insert("comparator".into(), c.into());
    }
    if !unit_text.is_empty() {
        q.insert("unit".into(), unit_text.into());
    }
    if let Some(code) = ucum_code(unit_code) {
        q.insert("system".into(), systems::UCUM.into());
        q.insert("code".into(), code.into());
    }
    Value::Object(q)
}

/// OBX-7: `3.5-5.3` gives low and high; `<5`/`>90` one bound; anything else is kept as text.
fn reference_range(raw: &str, units: &Repetition) -> Option<Value> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let bound = |s: &str| {
        decimal(s.trim())
            .filter(|(c, _)| c.is_none())
            .map(|(_, n)| quantity(n, None, units))
    };
    let split = raw
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '-')
        .map(|(i, _)| (&raw[..i], &raw[i + 1..]));
    if let Some((lo, hi)) = split {
        if let (Some(low), Some(high)) = (bound(lo), bound(hi)) {
            return Some(json!({ "low": low, "high": high }));
        }
    }
    if let Some(hi) = raw
        .strip_prefix("<=")
        .or_else(|| raw.strip_prefix('<'))
        .and_then(bound)
    {
        return Some(json!({ "high": hi, "text": raw }));
    }
    if let Some(lo) = raw
        .strip_prefix(">=")
        .or_else(|| raw.strip_prefix('>'))
        .and_then(bound)
    {
        return Some(json!({ "low": lo, "text": raw }));
    }
    Some(json!({ "text": raw }))
}

/// OBX-8 (HL7 table 0078) as v3 ObservationInterpretation; unknown flags are kept as text.
fn interpretation(flag: &str) -> Value {
    let display = match flag {
        "N" => "Normal",
        "H" => "High",
        "L" => "Low",
        "HH" => "Critical high",
        "LL" => "Critical low",
        "A" => "Abnormal",
        "AA" => "Critical abnormal",
        "<" => "Off scale low",
        ">" => "Off scale high",
        "HU" => "Significantly high",
        "LU" => "Significantly low",
        "U" => "Significant change up",
        "D" => "Significant change down",
        "B" => "Better",
        "W" => "Worse",
        "S" => "Susceptible",
        "R" => "Resistant",
        "I" => "Intermediate",
        "POS" => "Positive",
        "NEG" => "Negative",
        "IND" => "Indeterminate",
        "DET" => "Detected",
        "ND" => "Not detected",
        _ => return json!({ "text": flag }),
    };
    json!({ "coding": [build::coding(systems::INTERPRETATION, flag, Some(display))], "text": display })
}

// ---------------------------------------------------------------------------------------------
// Medications

fn medications(
    msg: &Message,
    ctx: &Context<'_>,
    pv1: Option<&Segment>,
    service_sensitive: bool,
) -> Result<Vec<MedicationPlan>, Rejection> {
    let mut orders: Vec<(&Segment, Option<&Segment>)> = Vec::new();
    for seg in msg.segments() {
        match seg.id() {
            "ORC" => orders.push((seg, None)),
            "RXE" => match orders.last_mut() {
                Some((_, rxe @ None)) => *rxe = Some(seg),
                _ => {
                    return Err(Rejection::error(
                        ErrorKind::MissingField,
                        "an RXE segment has no ORC before it",
                    ))
                }
            },
            _ => {}
        }
    }
    if orders.is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "the order message has no ORC segment",
        ));
    }
    let category = pv1.and_then(|p| match p.get(2).trim() {
        "I" => Some(("inpatient", "Inpatient")),
        "O" | "E" => Some(("outpatient", "Outpatient")),
        _ => None,
    });
    orders
        .into_iter()
        .map(|(orc, rxe)| medication(orc, rxe, ctx, category, service_sensitive))
        .collect()
}

fn medication(
    orc: &Segment,
    rxe: Option<&Segment>,
    ctx: &Context<'_>,
    category: Option<(&str, &str)>,
    service_sensitive: bool,
) -> Result<MedicationPlan, Rejection> {
    let placer_order = first_non_empty(&[orc.component(2, 1), orc.component(3, 1)])
        .trim()
        .to_owned();
    if placer_order.is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "ORC-2 placer order number is empty",
        ));
    }
    let control = orc.get(1).trim().to_ascii_uppercase();
    let action = match control.as_str() {
        "NW" | "RP" | "XO" | "SC" | "SN" | "OK" => OrderAction::Active,
        "DC" | "OD" => OrderAction::Stop,
        "CA" | "OC" => OrderAction::Cancel,
        other => {
            return Err(Rejection::error(
                ErrorKind::InvalidValue,
                format!("ORC-1 order control '{other}' is not supported"),
            ))
        }
    };
    let order_time = ctx
        .time(orc.component(9, 1))
        .map(|t| t.fhir_date_time())
        .or_else(|| ctx.header.message_time.clone());
    if action != OrderAction::Active && rxe.is_none() {
        return Ok(MedicationPlan {
            placer_order,
            action,
            sensitive: service_sensitive,
            resource: None,
            end_time: order_time,
        });
    }
    let rxe = rxe.ok_or_else(|| {
        Rejection::error(
            ErrorKind::MissingField,
            "a new medication order (ORC-1 NW) has no RXE segment",
        )
    })?;
    let give = rxe.field(2).first();
    if give.component(1).trim().is_empty() && give.component(2).trim().is_empty() {
        return Err(Rejection::error(
            ErrorKind::MissingField,
            "RXE-2 give code is empty",
        ));
    }
    let (status, period) = match action {
        OrderAction::Active => ("active", json!({ "start": order_time })),
        OrderAction::Stop => ("stopped", json!({ "end": order_time })),
        OrderAction::Cancel => ("not-taken", json!({})),
    };
    let instructions = rxe.field(7).first();
    let dose_text = first_non_empty(&[instructions.component(2), instructions.component(1)]).trim();
    let dose = decimal(rxe.get(3).trim())
        .filter(|(c, _)| c.is_none())
        .map(|(_, n)| quantity(n, None, rxe.field(5).first()));
    let dose_and_rate = dose
        .map(|d| json!([{ "doseQuantity": d }]))
        .unwrap_or(json!([]));
    let mut resource = json!({
        "resourceType": "MedicationStatement",
        "identifier": [build::local_identifier(ctx.facility, &placer_order)],
        "status": status,
        "category": category.map(|(code, display)| json!({ "coding": [build::coding(systems::MEDICATION_STATEMENT_CATEGORY, code, Some(display))] })),
        "medicationCodeableConcept": ctx.coded(give),
        "subject": ctx.subject(),
        "effectivePeriod": period,
        "dateAsserted": ctx.header.message_time,
        "informationSource": build::organisation_reference(ctx.facility, None),
        "dosage": [{ "text": dose_text, "doseAndRate": dose_and_rate }],
    });
    build::prune(&mut resource);
    let sensitive = service_sensitive || ctx.cfg.is_sensitive_code(give.component(1).trim());
    Ok(MedicationPlan {
        placer_order,
        action,
        sensitive,
        resource: Some(resource),
        end_time: order_time,
    })
}

// ---------------------------------------------------------------------------------------------
// Shared

/// A CE/CWE `code^text^system` as a CodeableConcept: SNOMED CT (`SCT`), LOINC (`LN`) and dm+d
/// (`DMD`) codes become codings in their systems; local codes (system `L`, `LOCAL`, a `99zzz`
/// local table of HL7 table 0396, or none named when a text is given too) become codings in the sending facility's local
/// code system `local_system`, so that a local test code is kept and searchable. A code from a
/// named system the feed does not know is kept as text only, rather than mislabelled as local.
fn coded(ce: &Repetition, local_system: &str) -> Value {
    let (code, text, system) = (
        ce.component(1).trim(),
        ce.component(2).trim(),
        ce.component(3).trim().to_ascii_uppercase(),
    );
    let uri = match system.as_str() {
        "SCT" | "SNOMED" | "SNM" | "SNOMEDCT" => Some(systems::SNOMED),
        "LN" | "LOINC" => Some(systems::LOINC),
        "DMD" => Some(systems::DMD),
        "L" | "LOCAL" => Some(local_system),
        // `code^text` with no system: the sender's own code. A lone first component with no
        // system is as often free text as a code, and stays text.
        "" if !text.is_empty() => Some(local_system),
        s if s.len() == 5 && s.starts_with("99") => Some(local_system),
        _ => None,
    };
    let text = if text.is_empty() { code } else { text };
    match uri {
        Some(uri) if !code.is_empty() => build::concept(uri, code, text),
        _ => build::text_concept(text),
    }
}

/// A UCUM code for a unit as laboratories write it, or `None` when it is not UCUM.
pub fn ucum_code(unit: &str) -> Option<String> {
    let unit = unit.trim();
    let mapped = match unit {
        "" => return None,
        "mmHg" => "mm[Hg]",
        "IU/L" | "iu/L" | "IU/l" => "[IU]/L",
        "IU/mL" => "[IU]/mL",
        "x10^9/L" | "10^9/L" | "x10*9/L" | "X10^9/L" => "10*9/L",
        "x10^12/L" | "10^12/L" | "x10*12/L" | "X10^12/L" => "10*12/L",
        "mL/min/1.73m2" | "ml/min/1.73m2" | "mL/min/1.73m^2" => "mL/min/{1.73_m2}",
        "ratio" | "Ratio" => "{ratio}",
        "secs" | "sec" => "s",
        "mins" => "min",
        "hrs" | "hr" => "h",
        "bpm" | "beats/min" => "/min",
        u if is_ucum(u) => u,
        _ => return None,
    };
    Some(mapped.to_owned())
}

/// A conservative check for UCUM syntax: terms of prefix + atom (+ exponent) joined by `/` or `.`,
/// or a power of ten like `10*9`.
fn is_ucum(unit: &str) -> bool {
    const ATOMS: [&str; 20] = [
        "mol", "g", "L", "l", "eq", "U", "m", "s", "min", "h", "d", "wk", "mo", "a", "Pa", "kat",
        "Cel", "%", "[IU]", "[iU]",
    ];
    const PREFIXES: [&str; 9] = ["", "k", "d", "c", "m", "u", "n", "p", "f"];
    let term_ok = |term: &str| {
        if let Some(power) = term
            .strip_prefix("10*")
            .or_else(|| term.strip_prefix("10^"))
        {
            return !power.is_empty() && power.bytes().all(|b| b.is_ascii_digit());
        }
        let term = term.trim_end_matches(|c: char| c.is_ascii_digit());
        if term.is_empty() {
            return false;
        }
        if term.starts_with('{') && term.ends_with('}') {
            return true;
        }
        PREFIXES.iter().any(|p| {
            term.strip_prefix(p)
                .is_some_and(|atom| ATOMS.contains(&atom))
        })
    };
    let mut terms = unit.split(['/', '.']);
    let first = terms.next().unwrap_or_default();
    (first.is_empty() && unit.starts_with('/') || first == "1" || term_ok(first))
        && terms.all(term_ok)
}

fn first_non_empty<'a>(values: &[&'a str]) -> &'a str {
    values
        .iter()
        .copied()
        .find(|v| !v.trim().is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scr_hl7::examples::{with_field, ADT_A01, ORU_R01, RDE_O11};
    use scr_hl7::parser::parse;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn cfg() -> Hl7Config {
        Hl7Config {
            facilities: vec!["RXK".into()],
            sensitive_services: vec!["GUM".into(), "FERT".into()],
            sensitive_codes: vec!["399186007".into()],
        }
    }

    fn plan_of(raw: &str) -> Result<Plan, Box<dyn std::error::Error>> {
        let msg = parse(raw)?;
        let h = header(&msg, "2026-11-05T00:00:00Z", &cfg());
        let kind = check_header(&msg, &h, &cfg()).map_err(|r| r.reason)?;
        Ok(plan(&msg, kind, &h, &cfg()).map_err(|r| r.reason)?)
    }

    fn conforms(v: &Value) -> TestResult {
        let mut with_id = v.clone();
        with_id["id"] = "x.y-1".into();
        scr_fhir::conformance::check(&with_id).map_err(|e| format!("{e}: {v}"))?;
        Ok(())
    }

    #[test]
    fn the_adt_example_gives_valid_patient_visit_and_allergy() -> TestResult {
        let p = plan_of(ADT_A01)?;
        assert_eq!(p.nhs_number, "9990000018");
        let patient = &p.patient.resource;
        conforms(patient)?;
        assert_eq!(patient["name"][0]["family"], "SMITH");
        assert_eq!(patient["name"][0]["given"], json!(["JANE", "ANN"]));
        assert_eq!(patient["name"][0]["prefix"], json!(["MRS"]));
        assert_eq!(patient["birthDate"], "1970-01-02");
        assert_eq!(patient["gender"], "female");
        assert_eq!(patient["address"][0]["postalCode"], "B70 1AA");
        assert_eq!(patient["address"][0]["city"], "WEST BROMWICH");
        assert_eq!(
            patient["telecom"][0],
            json!({"system": "phone", "value": "07700900123", "use": "mobile"})
        );
        assert_eq!(
            patient["generalPractitioner"][0]["identifier"]["value"],
            "M85001"
        );
        assert_eq!(patient["identifier"][1]["value"], "K1234567");
        assert_eq!(p.patient.local_id.as_deref(), Some("K1234567"));
        assert_eq!(p.patient.family_upper.as_deref(), Some("SMITH"));

        let visit = p.visit.as_ref().ok_or("no visit")?;
        assert_eq!(visit.visit_number, "V998877");
        assert_eq!(visit.admit_time.as_deref(), Some("2026-11-01T09:25:00Z"));
        assert_eq!(visit.patient_class.as_deref(), Some("I"));
        assert!(!visit.sensitive);

        let allergy = &p.allergies[0].resource;
        conforms(allergy)?;
        assert_eq!(allergy["criticality"], "high");
        assert_eq!(allergy["category"], json!(["medication"]));
        assert_eq!(allergy["code"]["coding"][0]["system"], systems::SNOMED);
        assert_eq!(
            allergy["reaction"][0]["manifestation"][0]["text"],
            "Anaphylaxis"
        );
        assert_eq!(allergy["onsetDateTime"], "2015-06-10");
        assert_eq!(allergy["clinicalStatus"]["coding"][0]["code"], "active");
        Ok(())
    }

    #[test]
    fn the_result_example_gives_valid_observations() -> TestResult {
        let p = plan_of(ORU_R01)?;
        assert_eq!(p.observations.len(), 2);
        let k = &p.observations[1];
        conforms(&k.resource)?;
        assert_eq!(
            (k.filler_order.as_str(), k.code.as_str(), k.sub_id.as_str()),
            ("L556677", "2823-3^LN", "")
        );
        let r = &k.resource;
        assert_eq!(r["status"], "final");
        assert_eq!(
            r["code"]["coding"][0],
            json!({"system": systems::LOINC, "code": "2823-3", "display": "Potassium"})
        );
        assert_eq!(
            r["valueQuantity"],
            json!({"value": 5.9, "unit": "mmol/L", "system": systems::UCUM, "code": "mmol/L"})
        );
        assert_eq!(r["referenceRange"][0]["low"]["value"], json!(3.5));
        assert_eq!(r["referenceRange"][0]["high"]["value"], json!(5.3));
        assert_eq!(r["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(r["category"][0]["coding"][0]["code"], "laboratory");
        assert_eq!(r["effectiveDateTime"], "2026-11-01T11:30:00Z");
        assert_eq!(r["issued"], "2026-11-01T12:00:00Z");
        assert_eq!(
            p.observations[0].resource["valueQuantity"]["value"],
            json!(139)
        );
        assert!(!p.patient.from_adt);
        Ok(())
    }

    #[test]
    fn the_medication_example_gives_a_valid_statement() -> TestResult {
        let p = plan_of(RDE_O11)?;
        let m = &p.medications[0];
        assert_eq!(
            (m.placer_order.as_str(), m.action),
            ("RX778899", OrderAction::Active)
        );
        let r = m.resource.as_ref().ok_or("no resource")?;
        conforms(r)?;
        assert_eq!(r["status"], "active");
        assert_eq!(
            r["medicationCodeableConcept"]["coding"][0]["system"],
            "https://dmd.nhs.uk"
        );
        assert_eq!(
            r["dosage"][0]["text"],
            "Two tablets up to four times a day when required"
        );
        assert_eq!(
            r["dosage"][0]["doseAndRate"][0]["doseQuantity"],
            json!({"value": 2, "unit": "tablet"})
        );
        assert_eq!(r["effectivePeriod"]["start"], "2026-11-03T15:55:00Z");
        Ok(())
    }

    #[test]
    fn value_types_translate_and_stay_valid() -> TestResult {
        let raw = "MSH|^~\\&|LAB|RXK|SCR|SCR|20261101120000||ORU^R01|C9|P|2.4\r\
PID|1||9990000018^^^NHS^NH\r\
OBR|1||L1|CT^CT head^L|||20261101110000|||||||||||||||||RAD\r\
OBX|1|TX|18782-3^Radiology study observation^LN||No acute abnormality.~Normal ventricles.||||||P\r\
NTE|1||Reported by consultant\r\
OBX|2|CE|XYZ^Finding^SCT||260385009^Negative^SCT||||||F\r\
OBX|3|NM|1234-5^eGFR^LN||>90|mL/min/1.73m2|>60|N|||F\r\
OBX|4|SN|5678-9^Ratio^LN||<^0.5|{ratio}||||F\r\
OBX|5|NM|1111-1^Thing^LN||||||||F\r\
OBX|6|DT|2222-2^Date^LN||20261101||||||F\r";
        let p = plan_of(raw)?;
        for o in &p.observations {
            conforms(&o.resource)?;
            assert_eq!(o.resource["category"][0]["coding"][0]["code"], "imaging");
        }
        let o = &p.observations;
        assert_eq!(
            o[0].resource["valueString"],
            "No acute abnormality.\nNormal ventricles."
        );
        assert_eq!(o[0].resource["status"], "preliminary");
        assert_eq!(o[0].resource["note"][0]["text"], "Reported by consultant");
        assert_eq!(
            o[1].resource["valueCodeableConcept"]["coding"][0]["code"],
            "260385009"
        );
        assert_eq!(
            o[2].resource["valueQuantity"],
            json!({"value": 90, "comparator": ">", "unit": "mL/min/1.73m2", "system": systems::UCUM, "code": "mL/min/{1.73_m2}"})
        );
        assert_eq!(
            o[2].resource["referenceRange"][0],
            json!({"low": {"value": 60, "unit": "mL/min/1.73m2", "system": systems::UCUM, "code": "mL/min/{1.73_m2}"}, "text": ">60"})
        );
        assert_eq!(o[3].resource["valueQuantity"]["comparator"], "<");
        assert!(o[4].resource.get("dataAbsentReason").is_some());
        assert_eq!(o[5].resource["valueDateTime"], "2026-11-01");
        Ok(())
    }

    fn summer_result(system: &str) -> String {
        format!(
            "MSH|^~\\&|LAB|RXK|SCR|SCR|20260701120000||ORU^R01|S1|P|2.4\r\
PID|1||9990000018^^^NHS^NH\r\
OBR|1||L1|GLU^Glucose^L|||20260701110000|||||||||||||||||CH\r\
OBX|1|NM|GLU^Glucose{system}||6.1|mmol/L|3.0-7.8|N|||F|||20260701113000\r"
        )
    }

    fn plan_with(raw: &str, cfg: &Hl7Config) -> Result<Plan, Box<dyn std::error::Error>> {
        let msg = parse(raw)?;
        let h = header(&msg, "2026-11-05T00:00:00Z", cfg);
        let kind = check_header(&msg, &h, cfg).map_err(|r| r.reason)?;
        Ok(plan(&msg, kind, &h, cfg).map_err(|r| r.reason)?)
    }

    #[test]
    fn item9_hl7_local_time_bst_results_carry_the_uk_offset() -> TestResult {
        let msg = parse(&summer_result("^LN"))?;
        let h = header(&msg, "2026-11-05T00:00:00Z", &cfg());
        assert_eq!(h.message_time.as_deref(), Some("2026-07-01T12:00:00+01:00"));
        assert_eq!(h.source_time, "2026-07-01T11:00:00Z");
        let p = plan_of(&summer_result("^LN"))?;
        let r = &p.observations[0].resource;
        conforms(r)?;
        assert_eq!(r["effectiveDateTime"], "2026-07-01T11:30:00+01:00");
        assert_eq!(r["issued"], "2026-07-01T12:00:00+01:00");
        // The example ADT is in November: GMT, unchanged.
        let adt = plan_of(ADT_A01)?;
        assert_eq!(
            adt.visit.ok_or("no visit")?.admit_time.as_deref(),
            Some("2026-11-01T09:25:00Z")
        );
        Ok(())
    }

    #[test]
    fn item9_hl7_local_time_follows_the_facility_zone() -> TestResult {
        let mut c = cfg();
        c.facilities[0].time_zone = scr_fhir::zone::by_name("America/New_York")?;
        let p = plan_with(&summer_result("^LN"), &c)?;
        assert_eq!(
            p.observations[0].resource["effectiveDateTime"],
            "2026-07-01T11:30:00-04:00"
        );
        // An explicit offset wins over the zone.
        let sent = summer_result("^LN").replace("20260701113000\r", "20260701113000+0000\r");
        let p = plan_with(&sent, &c)?;
        assert_eq!(
            p.observations[0].resource["effectiveDateTime"],
            "2026-07-01T11:30:00Z"
        );
        Ok(())
    }

    #[test]
    fn item10_local_code_kept_as_a_coding_in_the_facility_local_system() -> TestResult {
        let p = plan_of(&summer_result("^L"))?;
        let r = &p.observations[0].resource;
        conforms(r)?;
        assert_eq!(
            r["code"]["coding"][0],
            json!({"system": "https://scr.example.nhs.uk/CodeSystem/local-RXK", "code": "GLU", "display": "Glucose"})
        );
        assert_eq!(r["code"]["text"], "Glucose");
        assert_eq!(p.observations[0].code, "GLU^L");
        // A configured system, and the other spellings of a local code.
        let mut c = cfg();
        c.facilities[0].local_code_system = "https://trust.example.nhs.uk/CodeSystem/lab".into();
        for local in ["^L", "^99RXK", "^LOCAL", ""] {
            let p = plan_with(&summer_result(local), &c)?;
            assert_eq!(
                p.observations[0].resource["code"]["coding"][0]["system"],
                "https://trust.example.nhs.uk/CodeSystem/lab",
                "{local}"
            );
        }
        // A system the feed does not know is not passed off as local: text only, as before.
        let p = plan_of(&summer_result("^XYZ"))?;
        assert_eq!(
            p.observations[0].resource["code"],
            json!({"text": "Glucose"})
        );
        // Coded values and allergens keep local codes too.
        let raw = ADT_A01.replace("91936005^Allergy to penicillin^SCT", "PEN^Penicillin^L");
        let a = &plan_of(&raw)?.allergies[0].resource;
        conforms(a)?;
        assert_eq!(
            a["code"]["coding"][0]["system"],
            "https://scr.example.nhs.uk/CodeSystem/local-RXK"
        );
        Ok(())
    }

    #[test]
    fn item10_default_local_systems_differ_per_facility() {
        assert_eq!(
            crate::ingest::default_local_code_system("rxk"),
            "https://scr.example.nhs.uk/CodeSystem/local-RXK"
        );
        assert_ne!(
            crate::ingest::default_local_code_system("RXK"),
            crate::ingest::default_local_code_system("TAJ")
        );
    }

    #[test]
    fn units_are_ucum_only_when_they_look_like_ucum() {
        assert_eq!(ucum_code("mmol/L").as_deref(), Some("mmol/L"));
        assert_eq!(ucum_code("umol/L").as_deref(), Some("umol/L"));
        assert_eq!(ucum_code("g/L").as_deref(), Some("g/L"));
        assert_eq!(ucum_code("fL").as_deref(), Some("fL"));
        assert_eq!(ucum_code("%").as_deref(), Some("%"));
        assert_eq!(ucum_code("10*9/L").as_deref(), Some("10*9/L"));
        assert_eq!(ucum_code("x10^9/L").as_deref(), Some("10*9/L"));
        assert_eq!(ucum_code("mmHg").as_deref(), Some("mm[Hg]"));
        assert_eq!(ucum_code("kg/m2").as_deref(), Some("kg/m2"));
        assert_eq!(ucum_code("tablet"), None);
        assert_eq!(ucum_code("cells"), None);
        assert_eq!(ucum_code(""), None);
    }

    #[test]
    fn decimals_keep_comparators_and_refuse_text() {
        assert_eq!(decimal("139"), Some((None, json!(139))));
        assert_eq!(decimal("5.9"), Some((None, json!(5.9))));
        assert_eq!(decimal("-0.5"), Some((None, json!(-0.5))));
        assert_eq!(decimal("<5"), Some((Some("<"), json!(5))));
        assert_eq!(decimal(">= 2.5"), Some((Some(">="), json!(2.5))));
        for bad in ["", ".", "abc", "1.2.3", "5-6", "1e5", "-"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_checks_reject_unknown_facility_version_and_type() -> TestResult {
        let check = |raw: &str| -> Result<ErrorKind, Box<dyn std::error::Error>> {
            let msg = parse(raw)?;
            let h = header(&msg, "2026-11-05T00:00:00Z", &cfg());
            match check_header(&msg, &h, &cfg()) {
                Ok(_) => Err("accepted".into()),
                Err(r) => {
                    assert_eq!(r.code, AckCode::AR);
                    Ok(r.kind)
                }
            }
        };
        assert_eq!(
            check(&ADT_A01.replace("|RXK|SCR", "|RXL|SCR"))?,
            ErrorKind::UnknownFacility
        );
        assert_eq!(
            check(&ADT_A01.replace("|P|2.4", "|P|2.5"))?,
            ErrorKind::UnsupportedVersion
        );
        assert_eq!(
            check(&ADT_A01.replace("ADT^A01", "ADT^A40"))?,
            ErrorKind::UnsupportedType
        );
        assert_eq!(
            check(&ADT_A01.replace("|RXK000123|", "||"))?,
            ErrorKind::MissingField
        );
        Ok(())
    }

    #[test]
    fn missing_or_invalid_nhs_numbers_are_application_errors() -> TestResult {
        for raw in [
            ADT_A01.replace("9990000018^^^NHS^NH~", ""),
            ADT_A01.replace("9990000018", "9990000017"),
        ] {
            let msg = parse(&raw)?;
            let h = header(&msg, "2026-11-05T00:00:00Z", &cfg());
            let kind = check_header(&msg, &h, &cfg()).map_err(|r| r.reason)?;
            let err = plan(&msg, kind, &h, &cfg()).err().ok_or("accepted")?;
            assert_eq!((err.code, err.kind), (AckCode::AE, ErrorKind::NhsNumber));
            assert!(
                !err.reason.contains("999000001"),
                "the reason must not echo the number"
            );
        }
        Ok(())
    }

    #[test]
    fn sensitive_services_and_codes_mark_records_sensitive() -> TestResult {
        let gum = with_field(ORU_R01, "OBR", 24, "GUM");
        assert!(plan_of(&gum)?.observations.iter().all(|o| o.sensitive));
        let coded = ORU_R01.replace("2951-2^Sodium^LN", "399186007^Sensitive thing^SCT");
        let p = plan_of(&coded)?;
        assert!(p.observations[0].sensitive && !p.observations[1].sensitive);
        let adt = with_field(ADT_A01, "PV1", 10, "GUM");
        let p = plan_of(&adt)?;
        assert!(p.visit.as_ref().ok_or("no visit")?.sensitive);
        assert_eq!(
            p.visit.as_ref().ok_or("no visit")?.service_code.as_deref(),
            Some("GUM")
        );
        assert!(p.allergies[0].sensitive);
        Ok(())
    }
}
