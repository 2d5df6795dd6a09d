//! The fixture people and organisations: always generated, whatever `Options::patients` is,
//! with fixed identifiers that tests, the demo and the Postman collection name. Every date in
//! their records is relative to `Options::today`, except dates of birth.
//!
//! | who | NHS number | where | exercises |
//! |---|---|---|---|
//! | Mrs Jane Ann SMITH | 9990000018 | GP M85001, LA-DUD, RXK | the whole record; R-LR-1/2/3; communication need (Punjabi interpreter) as a Flag; severe allergy; alerts first (safeguarding household alert); entered-in-error never shown |
//! | Mr Mohammed KHAN | 9990000026 | GP M85001, RXK | R-OBJ-1/2/3: objection coded at the GP 200 days ago; RXK then sees only RXK's results |
//! | Amelia NOWAK (child) | 9990000034 | GP M85002, LA-DUD | R-OBJ-4: objection by a parent; R-LR-3 team allocation (no named worker) |
//! | Sam TAYLOR (gender other) | 9990000042 | GP M85001, RXK | R-SENS-1/2: GUM (`PV1-10` and `OBR-24`) and FERT (`PV1-10`) results never leave RXK; an ordinary ED result does |
//! | Mr Peter JONES | 9990000050 | GP M85002 | R-SENS-3: a confidential observation and medication seen only by M85002 |
//! | Ms Linda BROWN | 9990000069 | GP M85003 (left 60 days ago), GP M85002 (current) | R-LR-1: a registration that ended gives no relationship; M85003 still holds its records |
//! | Mr Oliver WHITE | 9990000077 | LA-DUD, TAJ | no GP record at all; mental health trust data; R-LR-3 allocation that ended 30 days ago |
//! | bad rows | NULL, 9990000017, 999000002 | GP, LA-DUD, RXK | unmatchable rows are reported, never matched: AE for an invalid NHS number, AR for an unknown sending facility |

/// The facade-wide test NHS numbers of the fixture people (all pass Modulus 11).
pub const JANE_SMITH_NHS: &str = "9990000018";
pub const MOHAMMED_KHAN_NHS: &str = "9990000026";
pub const AMELIA_NOWAK_NHS: &str = "9990000034";
pub const SAM_TAYLOR_NHS: &str = "9990000042";
pub const PETER_JONES_NHS: &str = "9990000050";
pub const LINDA_BROWN_NHS: &str = "9990000069";
pub const OLIVER_WHITE_NHS: &str = "9990000077";
/// Every valid fixture NHS number, in the order above.
pub const ALL_NHS: [&str; 7] = [
    JANE_SMITH_NHS,
    MOHAMMED_KHAN_NHS,
    AMELIA_NOWAK_NHS,
    SAM_TAYLOR_NHS,
    PETER_JONES_NHS,
    LINDA_BROWN_NHS,
    OLIVER_WHITE_NHS,
];

/// Ten digits that fail the Modulus 11 check (GP row `gp-pat-bad2`, the HL7 ADT answered AE).
pub const INVALID_CHECK_DIGIT_NHS: &str = "9990000017";
/// Nine digits: the social care person `sc-per-bad1`.
pub const NINE_DIGIT_NHS: &str = "999000002";

// ---- organisations ----------------------------------------------------------------------

/// The fixture practices; always in `organisation`, whatever `Options::practices` says.
pub const PRACTICES: [(&str, &str); 3] = [
    (PRACTICE_HIGH_STREET, "High Street Surgery"),
    (PRACTICE_PARK_ROAD, "Park Road Medical Centre"),
    (PRACTICE_CANAL_SIDE, "Canal Side Practice"),
];
pub const PRACTICE_HIGH_STREET: &str = "M85001";
pub const PRACTICE_PARK_ROAD: &str = "M85002";
pub const PRACTICE_CANAL_SIDE: &str = "M85003";
/// The council whose social care replica is generated.
pub const COUNCIL: &str = "LA-DUD";
/// The acute trust (`MSH-4`).
pub const ACUTE_TRUST: &str = "RXK";
/// The mental health trust (`MSH-4`).
pub const MENTAL_HEALTH_TRUST: &str = "TAJ";
/// A sending facility no deployment configures: its message is answered AR.
pub const UNKNOWN_FACILITY: &str = "XXX";

/// `organisation.org_guid` of a practice.
pub fn org_guid(ods: &str) -> String {
    format!("gp-org-{ods}")
}

// ---- GP replica keys --------------------------------------------------------------------

pub const JANE_SMITH_GP_PATIENT: &str = "gp-pat-0001";
pub const MOHAMMED_KHAN_GP_PATIENT: &str = "gp-pat-0002";
pub const AMELIA_NOWAK_GP_PATIENT: &str = "gp-pat-0003";
pub const SAM_TAYLOR_GP_PATIENT: &str = "gp-pat-0004";
pub const PETER_JONES_GP_PATIENT: &str = "gp-pat-0005";
/// Linda Brown's ended registration at M85003.
pub const LINDA_BROWN_GP_PATIENT_ENDED: &str = "gp-pat-0006a";
/// Linda Brown's current registration at M85002.
pub const LINDA_BROWN_GP_PATIENT_CURRENT: &str = "gp-pat-0006b";
/// GP patient row with a NULL NHS number.
pub const GP_PATIENT_NULL_NHS: &str = "gp-pat-bad1";
/// GP patient row with [`INVALID_CHECK_DIGIT_NHS`].
pub const GP_PATIENT_INVALID_NHS: &str = "gp-pat-bad2";
/// Jane Smith's usual GP.
pub const JANE_SMITH_USUAL_GP: &str = "Dr A Patel";
/// Jane Smith's interpreter alert (`patient_alert.term`).
pub const JANE_SMITH_GP_ALERT: &str = "Requires Punjabi interpreter";
/// Jane Smith's observation with `entered_in_error = 1`: never shown.
pub const JANE_SMITH_ENTERED_IN_ERROR_OBSERVATION: &str = "gp-obs-0001-09";
/// Peter Jones's confidential entries (`is_confidential = 1`, recorded by M85002).
pub const PETER_JONES_CONFIDENTIAL_OBSERVATION: &str = "gp-obs-0005-05";
pub const PETER_JONES_CONFIDENTIAL_MEDICATION: &str = "gp-med-0005-03";

/// SNOMED CT: the objection to the shared care record (R-OBJ-1).
pub const OBJECTION_SNOMED: &str = "416409005";
pub const OBJECTION_TERM: &str = "Refused consent for upload to local shared electronic record";
/// The term of Amelia Nowak's objection, recorded for her by a parent (R-OBJ-4).
pub const OBJECTION_BY_PARENT_TERM: &str =
    "Refused consent for upload to local shared electronic record (by parent)";
/// Days before `today` of Khan's and Amelia's objections.
pub const MOHAMMED_KHAN_OBJECTION_DAYS_AGO: i64 = 200;
pub const AMELIA_NOWAK_OBJECTION_DAYS_AGO: i64 = 100;
/// Days before `today` that Linda Brown left M85003.
pub const LINDA_BROWN_LEFT_DAYS_AGO: i64 = 60;

// ---- social care replica keys (LA-DUD) ----------------------------------------------------

pub const JANE_SMITH_SC_PERSON: &str = "sc-per-0001";
pub const AMELIA_NOWAK_SC_PERSON: &str = "sc-per-0003";
pub const OLIVER_WHITE_SC_PERSON: &str = "sc-per-0007";
/// Social care person with the nine-digit [`NINE_DIGIT_NHS`].
pub const SC_PERSON_BAD_NHS: &str = "sc-per-bad1";
/// Alex Green, Social Worker, team `tm-adults-north`: allocated to Jane Smith (open) and to
/// Oliver White (ended 30 days ago).
pub const ALEX_GREEN_USER_ID: &str = "sw-dud-0001";
pub const ALEX_GREEN_WORKER_ID: &str = "wk-0001";
/// Chris Black, Social Worker, team `tm-childrens`: sees Amelia Nowak through the team.
pub const CHRIS_BLACK_USER_ID: &str = "sw-dud-0002";
pub const CHRIS_BLACK_WORKER_ID: &str = "wk-0002";
pub const TEAM_ADULTS_NORTH: &str = "tm-adults-north";
pub const TEAM_CHILDRENS: &str = "tm-childrens";
/// Jane Smith's open allocation to Alex Green, and Amelia Nowak's to the children's team.
pub const JANE_SMITH_ALLOCATION: &str = "sc-alloc-0001";
pub const AMELIA_NOWAK_ALLOCATION: &str = "sc-alloc-0003";
/// Jane Smith's active household safeguarding alert.
pub const JANE_SMITH_SC_ALERT: &str = "sc-alert-0001";
pub const JANE_SMITH_SC_ALERT_TITLE: &str = "Risk from household member";
/// Days before `today` that Oliver White's allocation ended.
pub const OLIVER_WHITE_ALLOCATION_ENDED_DAYS_AGO: i64 = 30;

// ---- HL7 backfill -------------------------------------------------------------------------

/// Messages the fixtures add to [`crate::hl7_backfill`], whatever the number of random patients.
pub const HL7_FIXTURE_MESSAGES: usize = 16;
/// Jane Smith's RXK inpatient visit (`PV1-19`), admitted 20 and discharged 15 days before today.
pub const JANE_SMITH_RXK_VISIT: &str = "V998877";
pub const JANE_SMITH_RXK_ADMITTED_DAYS_AGO: i64 = 20;
pub const JANE_SMITH_RXK_DISCHARGED_DAYS_AGO: i64 = 15;
/// Jane Smith's hospital number at RXK (`PID-3`, type `MR`).
pub const JANE_SMITH_RXK_MRN: &str = "K1234567";
/// Jane Smith's U&E: filler order number (`OBR-3`).
pub const JANE_SMITH_UE_ORDER: &str = "L556677";
/// Sam Taylor's sexual health (`PV1-10` = `GUM`) and fertility (`PV1-10` = `FERT`) visits.
pub const SAM_TAYLOR_GUM_VISIT: &str = "V990042";
pub const SAM_TAYLOR_FERT_VISIT: &str = "V990043";
/// Sam Taylor's ordinary emergency department visit, whose results others may see.
pub const SAM_TAYLOR_ED_VISIT: &str = "V990044";
/// Oliver White's open inpatient visit at TAJ.
pub const OLIVER_WHITE_TAJ_VISIT: &str = "V770077";
/// `MSH-10` of the ADT whose only NHS number fails the check (answered AE).
pub const HL7_INVALID_NHS_CONTROL_ID: &str = "RXKBAD000001";
/// `MSH-10` of the message from [`UNKNOWN_FACILITY`] (answered AR).
pub const HL7_UNKNOWN_FACILITY_CONTROL_ID: &str = "XXXUNK000001";
/// Hospital services the default policy treats as sensitive (R-SENS-2).
pub const SENSITIVE_SERVICES: [&str; 2] = ["GUM", "FERT"];
