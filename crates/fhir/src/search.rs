//! Search parameters: which ones each resource type supports, parsing them from a query string
//! (with clear errors naming the parameter), and matching a resource against them in memory.
//!
//! The facade fetches a patient's records from every source in one batch and filters here, so one
//! definition of each parameter serves every source.
//!
//! Dates are compared as instants: every date, dateTime and search value becomes the inclusive
//! range of Unix seconds it denotes (`2026-11` is the whole of November), and an offset is
//! honoured (`2026-07-01T10:00:00+01:00` is `09:00:00Z`). A value without an offset (a date, or a
//! search value's time without one) is read in the server's zone, Europe/London, as the R4 search
//! specification asks ("the server's local time zone should be assumed"): `date=2026-07-02`
//! is the UK day, 2026-07-01T23:00:00Z to 2026-07-02T22:59:59Z. `ap` (approximately) widens the
//! search value's range by 10% of the gap between now and the value, on each side, as the R4
//! specification recommends, and matches any overlap.

use serde_json::Value;

use crate::bundle::{Issue, Severity};
use crate::{build, nhs_number, systems};

/// The kinds of search parameter the facade implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    Date,
    String,
    Reference,
}

/// One supported search parameter of one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The element searched (FHIRPath-like, for the CapabilityStatement and matching).
    pub path: &'static str,
    pub documentation: &'static str,
}

const fn p(
    name: &'static str,
    kind: ParamKind,
    path: &'static str,
    documentation: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        path,
        documentation,
    }
}

use ParamKind::{Date, Reference, String as Str, Token};

const PATIENT: &[ParamDef] = &[
    p(
        "identifier",
        Token,
        "identifier",
        "NHS number: https://fhir.nhs.uk/Id/nhs-number|9990000018",
    ),
    p(
        "family",
        Str,
        "name.family",
        "Family name, case-insensitive starts-with; requires birthdate",
    ),
    p(
        "birthdate",
        Date,
        "birthDate",
        "Date of birth, with prefixes",
    ),
    p("_id", Token, "id", "Logical id (the NHS number)"),
];
const ALLERGY: &[ParamDef] = &[
    p("patient", Reference, "patient", "Required: Patient/{id}"),
    p(
        "clinical-status",
        Token,
        "clinicalStatus",
        "active | inactive | resolved",
    ),
    p(
        "category",
        Token,
        "category",
        "food | medication | environment | biologic",
    ),
    p(
        "code",
        Token,
        "code",
        "SNOMED CT code of the allergy or substance",
    ),
    p("date", Date, "recordedDate", "Date first recorded"),
    p(
        "_id",
        Token,
        "id",
        "Logical id: one or more ids, comma separated",
    ),
];
const MEDICATION: &[ParamDef] = &[
    p("patient", Reference, "subject", "Required: Patient/{id}"),
    p("status", Token, "status", "active | completed | entered-in-error | intended | stopped | on-hold | unknown | not-taken"),
    p("category", Token, "category", "inpatient | outpatient | community | patientspecified"),
    p("code", Token, "medicationCodeableConcept", "dm+d code"),
    p("effective", Date, "effective", "Date the course was taken (effectivePeriod)"),
    p("_id", Token, "id", "Logical id: one or more ids, comma separated"),
];
const OBSERVATION: &[ParamDef] = &[
    p("patient", Reference, "subject", "Required: Patient/{id}"),
    p(
        "category",
        Token,
        "category",
        "laboratory | vital-signs | survey | exam | social-history | imaging",
    ),
    p("code", Token, "code", "SNOMED CT or LOINC code"),
    p(
        "date",
        Date,
        "effective",
        "Clinically relevant time, with prefixes eq ne gt lt ge le sa eb ap",
    ),
    p(
        "status",
        Token,
        "status",
        "registered | preliminary | final | amended",
    ),
    p(
        "_id",
        Token,
        "id",
        "Logical id: one or more ids, comma separated",
    ),
];
const FLAG: &[ParamDef] = &[
    p("patient", Reference, "subject", "Required: Patient/{id}"),
    p("date", Date, "period", "Time period when the alert applies"),
    p(
        "status",
        Token,
        "status",
        "active | inactive (facade extension of the R4 search parameters)",
    ),
    p(
        "category",
        Token,
        "category",
        "Alert category (facade extension of the R4 search parameters)",
    ),
    p(
        "_id",
        Token,
        "id",
        "Logical id: one or more ids, comma separated",
    ),
];

/// The supported parameters of a resource type (empty for types the facade does not serve).
pub fn params_for(resource_type: &str) -> &'static [ParamDef] {
    match resource_type {
        "Patient" => PATIENT,
        "AllergyIntolerance" => ALLERGY,
        "MedicationStatement" => MEDICATION,
        "Observation" => OBSERVATION,
        "Flag" => FLAG,
        _ => &[],
    }
}

/// Result parameters the facade understands on every search.
pub const RESULT_PARAMS: &[&str] = &["_count", "_summary", "_include", "_offset", "_format"];

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date parameter: the prefix, the value as sent, and the inclusive range of Unix seconds (UTC)
/// the value denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateParam {
    pub prefix: Prefix,
    /// The value without its prefix, as sent (`2026-11-01`).
    pub value: String,
    pub lower: i64,
    pub upper: i64,
    /// Seconds `ap` widens the range by on each side (0 for other prefixes).
    pub approximation: i64,
}

impl DateParam {
    /// The lower bound as a UTC instant (`YYYY-MM-DDThh:mm:ssZ`), which orders as text.
    pub fn lower_instant(&self) -> String {
        build::instant_from_unix(self.lower)
    }

    /// The upper bound (inclusive, to the second) as a UTC instant.
    pub fn upper_instant(&self) -> String {
        build::instant_from_unix(self.upper)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParam {
    /// `None`: any system; `Some("")`: no system (`|code`).
    pub system: Option<String>,
    pub code: Option<String>,
}

/// One parsed parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    Token(TokenParam),
    Date(DateParam),
    String(String),
    /// A reference to a Patient, by the facade's id (the NHS number).
    Patient(String),
}

/// A parsed search: criteria are ANDed across entries and ORed within one entry's values.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub resource_type: String,
    pub criteria: Vec<(ParamDef, Vec<Criterion>)>,
    pub count: usize,
    pub offset: usize,
    pub summary_count: bool,
    /// `_include` values that name the patient (e.g. `Observation:patient`).
    pub include_patient: bool,
    /// Parameters ignored under `Prefer: handling=lenient`, to report back.
    pub ignored: Vec<String>,
}

impl SearchRequest {
    /// The patient the search is about, if a `patient`/`subject` parameter names one.
    pub fn patient(&self) -> Option<&str> {
        self.criteria
            .iter()
            .find_map(|(_, values)| match values.as_slice() {
                [Criterion::Patient(id)] => Some(id.as_str()),
                _ => None,
            })
    }

    /// The ids an `_id` criterion names (codes only), if the search has one.
    pub fn ids(&self) -> Option<Vec<String>> {
        self.criteria
            .iter()
            .find(|(d, _)| d.name == "_id")
            .map(|(_, values)| {
                values
                    .iter()
                    .filter_map(|c| match c {
                        Criterion::Token(t) => t.code.clone(),
                        _ => None,
                    })
                    .collect()
            })
    }

    /// Does `resource` satisfy every criterion (the patient one is the caller's job)?
    pub fn matches(&self, resource: &Value) -> bool {
        self.criteria.iter().all(|(def, values)| {
            values.iter().any(|c| match c {
                Criterion::Patient(_) => true,
                Criterion::Token(t) => token_matches(resource, def, t),
                Criterion::Date(d) => {
                    date_range(resource, def.path).is_some_and(|(lo, hi)| date_matches(d, lo, hi))
                }
                Criterion::String(s) => string_matches(resource, def.path, s),
            })
        })
    }

    /// The query string of this search without paging, for `self`/`next` links.
    pub fn canonical_query(&self, raw: &[(String, String)]) -> String {
        raw.iter()
            .filter(|(k, _)| k != "_offset" && k != "_count" && !self.ignored.contains(k))
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn invalid(param: &str, message: String) -> Issue {
    Issue::new(Severity::Error, "invalid", message).at(param.to_owned())
}

/// Parses a search. Unknown parameters are errors unless `lenient` (then listed in `ignored`).
pub fn parse(
    resource_type: &str,
    pairs: &[(String, String)],
    lenient: bool,
) -> Result<SearchRequest, Vec<Issue>> {
    parse_at(resource_type, pairs, lenient, build::unix_now())
}

/// [`parse`] as at `now` (Unix seconds), which `ap` date values are approximated against.
pub fn parse_at(
    resource_type: &str,
    pairs: &[(String, String)],
    lenient: bool,
    now: i64,
) -> Result<SearchRequest, Vec<Issue>> {
    let defs = params_for(resource_type);
    let mut req = SearchRequest {
        resource_type: resource_type.to_owned(),
        criteria: Vec::new(),
        count: DEFAULT_COUNT,
        offset: 0,
        summary_count: false,
        include_patient: false,
        ignored: Vec::new(),
    };
    let mut issues = Vec::new();
    for (key, value) in pairs {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        match name {
            "_count" => match value.parse::<usize>() {
                Ok(n) => req.count = n.min(MAX_COUNT),
                Err(_) => issues.push(invalid(key, format!("_count must be a whole number, not '{value}'"))),
            },
            "_offset" => match value.parse::<usize>() {
                Ok(n) => req.offset = n,
                Err(_) => issues.push(invalid(key, format!("_offset must be a whole number, not '{value}'"))),
            },
            "_summary" => match value.as_str() {
                "count" => req.summary_count = true,
                "false" => {}
                other => issues.push(Issue::new(Severity::Error, "not-supported", format!("_summary={other} is not supported; use _summary=count")).at("_summary")),
            },
            "_format" => match value.as_str() {
                "json" | "application/json" | "application/fhir+json" => {}
                other => issues.push(Issue::new(Severity::Error, "not-supported", format!("_format={other} is not supported; this server speaks application/fhir+json")).at("_format")),
            },
            "_include" => {
                let ok = value == "*"
                    || (value.split(':').next() == Some(resource_type)
                        && matches!(value.split(':').nth(1), Some("patient") | Some("subject")));
                if ok && resource_type != "Patient" {
                    req.include_patient = true;
                } else {
                    issues.push(invalid(key, format!("_include={value} is not supported on {resource_type}; use {resource_type}:patient")));
                }
            }
            _ => match defs.iter().find(|d| d.name == name) {
                Some(def) => match parse_values(def, modifier, value, now) {
                    Ok(values) => req.criteria.push((*def, values)),
                    Err(issue) => issues.push(issue),
                },
                None if lenient => req.ignored.push(key.clone()),
                None => issues.push(
                    Issue::new(Severity::Error, "not-supported", format!("unknown search parameter '{key}' for {resource_type}; send Prefer: handling=lenient to ignore it"))
                        .at(key.clone()),
                ),
            },
        }
    }
    if issues.is_empty() {
        if let Err(issue) = check_required(&req) {
            issues.push(issue);
        }
    }
    if issues.is_empty() {
        Ok(req)
    } else {
        Err(issues)
    }
}

fn check_required(req: &SearchRequest) -> Result<(), Issue> {
    let has = |n: &str| req.criteria.iter().any(|(d, _)| d.name == n);
    if req.resource_type == "Patient" {
        if has("identifier") || has("_id") || (has("family") && has("birthdate")) {
            return Ok(());
        }
        return Err(Issue::new(
            Severity::Error,
            "required",
            "a Patient search needs identifier (NHS number), _id, or family with birthdate",
        ));
    }
    // `_id` names the records themselves: no patient is needed to find them.
    if req.patient().is_none() && !has("_id") {
        return Err(Issue::new(
            Severity::Error,
            "required",
            format!(
                "a {} search needs exactly one patient, e.g. patient=Patient/9990000018",
                req.resource_type
            ),
        )
        .at("patient"));
    }
    Ok(())
}

fn parse_values(
    def: &ParamDef,
    modifier: Option<&str>,
    raw: &str,
    now: i64,
) -> Result<Vec<Criterion>, Issue> {
    if let Some(m) = modifier {
        return Err(Issue::new(
            Severity::Error,
            "not-supported",
            format!("modifier :{m} is not supported on {}", def.name),
        )
        .at(def.name));
    }
    if raw.is_empty() {
        return Err(invalid(
            def.name,
            format!("parameter {} has no value", def.name),
        ));
    }
    // A comma separates alternatives (OR); `\,` is a literal comma.
    let values = split_unescaped(raw);
    let mut out = Vec::with_capacity(values.len());
    for v in &values {
        out.push(match def.kind {
            ParamKind::Token => {
                let t = parse_token(v);
                if def.name == "identifier" {
                    check_nhs_identifier(&t)?;
                }
                Criterion::Token(t)
            }
            ParamKind::Date => {
                Criterion::Date(parse_date_at(v, now).map_err(|m| invalid(def.name, m))?)
            }
            ParamKind::String => Criterion::String(v.to_lowercase()),
            ParamKind::Reference => {
                Criterion::Patient(parse_patient_reference(v).map_err(|m| invalid(def.name, m))?)
            }
        });
    }
    if def.kind == ParamKind::Reference && out.len() != 1 {
        return Err(invalid(def.name, "exactly one patient may be named".into()));
    }
    Ok(out)
}

fn split_unescaped(raw: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                if let Some(p) = parts.last_mut() {
                    p.push(',')
                }
                chars.next();
            }
            ',' => parts.push(String::new()),
            c => parts.last_mut().map(|p| p.push(c)).unwrap_or(()),
        }
    }
    parts
}

fn check_nhs_identifier(t: &TokenParam) -> Result<(), Issue> {
    match (&t.system, &t.code) {
        (Some(s), Some(code)) if s == systems::NHS_NUMBER => {
            if nhs_number::is_valid(code) {
                Ok(())
            } else {
                Err(invalid("identifier", format!("'{code}' is not a valid NHS number (10 digits with a Modulus 11 check digit)")))
            }
        }
        // Another identifier system (a hospital number, say): a well-formed search that no
        // Patient served here matches, since they are identified by NHS number.
        (Some(s), Some(_)) if !s.is_empty() => Ok(()),
        _ => Err(Issue::new(
            Severity::Error,
            "not-supported",
            format!(
                "identifier searches need the NHS number system: identifier={}|9990000018",
                systems::NHS_NUMBER
            ),
        )
        .at("identifier")),
    }
}

/// `Patient/123`, `123`, or an absolute URL ending in `Patient/123`.
pub fn parse_patient_reference(v: &str) -> Result<String, String> {
    let id = match v.rsplit_once("Patient/") {
        Some((_, id)) => id,
        None if !v.contains('/') => v,
        None => return Err(format!("'{v}' is not a Patient reference")),
    };
    if nhs_number::is_valid(id) {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "'{id}' is not a valid patient id: patients are identified by NHS number"
        ))
    }
}

pub fn parse_token(v: &str) -> TokenParam {
    match v.split_once('|') {
        Some((s, c)) => TokenParam {
            system: Some(s.to_owned()),
            code: (!c.is_empty()).then(|| c.to_owned()),
        },
        None => TokenParam {
            system: None,
            code: Some(v.to_owned()),
        },
    }
}

/// Parses a date parameter value with an optional two-letter prefix, `ap` approximated against
/// the system clock.
pub fn parse_date(v: &str) -> Result<DateParam, String> {
    parse_date_at(v, build::unix_now())
}

/// [`parse_date`] as at `now` (Unix seconds).
pub fn parse_date_at(v: &str, now: i64) -> Result<DateParam, String> {
    let (prefix, rest) = match v.get(..2) {
        Some("eq") => (Prefix::Eq, &v[2..]),
        Some("ne") => (Prefix::Ne, &v[2..]),
        Some("gt") => (Prefix::Gt, &v[2..]),
        Some("lt") => (Prefix::Lt, &v[2..]),
        Some("ge") => (Prefix::Ge, &v[2..]),
        Some("le") => (Prefix::Le, &v[2..]),
        Some("sa") => (Prefix::Sa, &v[2..]),
        Some("eb") => (Prefix::Eb, &v[2..]),
        Some("ap") => (Prefix::Ap, &v[2..]),
        _ => (Prefix::Eq, v),
    };
    let (lower, upper) = date_instants(rest).ok_or_else(|| format!("'{v}' is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm], optionally prefixed eq ne gt lt ge le sa eb ap)"))?;
    // R4: "the recommended value for the approximation is ... for a date, 10% of the gap
    // between now and the date".
    let approximation = if prefix == Prefix::Ap {
        now.abs_diff(lower).max(now.abs_diff(upper)) as i64 / 10
    } else {
        0
    };
    Ok(DateParam {
        prefix,
        value: rest.to_owned(),
        lower,
        upper,
        approximation,
    })
}

/// The inclusive range of Unix seconds a FHIR date or dateTime denotes. A value without an
/// offset is read in the server's zone ([`crate::zone::DEFAULT_TIME_ZONE`]). `None` when `v` is
/// not a date or dateTime.
pub fn date_instants(v: &str) -> Option<(i64, i64)> {
    let zone = crate::zone::default_zone();
    let num = |s: Option<&str>| -> Option<u32> {
        let s = s?;
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let local = |d: (i32, u32, u32)| crate::zone::local_to_unix(&zone, d, (0, 0, 0));
    if build::is_date(v) {
        let year = i32::try_from(num(v.get(..4))?).ok()?;
        let (start, next) = match v.len() {
            4 => ((year, 1, 1), (year + 1, 1, 1)),
            7 => {
                let m = num(v.get(5..7))?;
                let next = if m == 12 {
                    (year + 1, 1, 1)
                } else {
                    (year, m + 1, 1)
                };
                ((year, m, 1), next)
            }
            _ => {
                let (m, d) = (num(v.get(5..7))?, num(v.get(8..10))?);
                let day = build::days_from_civil(i64::from(year), m, d) + 1;
                let (ny, nm, nd) = build::civil_from_days(day);
                ((year, m, d), (i32::try_from(ny).ok()?, nm, nd))
            }
        };
        return Some((local(start)?, local(next)? - 1));
    }
    // YYYY-MM-DDThh:mm[:ss[.f+]][Z|(+|-)hh:mm]
    let day = v.get(..10)?;
    if !build::is_date(day) || v.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let rest = v.get(11..)?;
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, offset) = (rest.get(..zone_at)?, rest.get(zone_at..)?);
    let (hh, mm, ss, whole_minute) = match time.len() {
        5 if time.as_bytes()[2] == b':' => (num(time.get(..2))?, num(time.get(3..5))?, 0, true),
        n if n >= 8 && time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':' => {
            let fraction = time.get(8..)?;
            let digits = fraction.strip_prefix('.');
            let fraction_ok = fraction.is_empty()
                || digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            if !fraction_ok {
                return None;
            }
            (
                num(time.get(..2))?,
                num(time.get(3..5))?,
                num(time.get(6..8))?,
                false,
            )
        }
        _ => return None,
    };
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let date = (
        i32::try_from(num(day.get(..4))?).ok()?,
        num(day.get(5..7))?,
        num(day.get(8..10))?,
    );
    let start = match offset {
        "" => crate::zone::local_to_unix(&zone, date, (hh, mm, ss))?,
        "Z" => crate::zone::local_to_unix(&jiff::tz::TimeZone::UTC, date, (hh, mm, ss))?,
        o => {
            let b = o.as_bytes();
            if b.len() != 6 || b[3] != b':' {
                return None;
            }
            let (oh, om) = (num(o.get(1..3))?, num(o.get(4..6))?);
            if oh > 14 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            let utc = crate::zone::local_to_unix(&jiff::tz::TimeZone::UTC, date, (hh, mm, ss))?;
            if b[0] == b'-' {
                utc + secs
            } else {
                utc - secs
            }
        }
    };
    Some((start, start + if whole_minute { 59 } else { 0 }))
}

fn date_matches(p: &DateParam, lo: i64, hi: i64) -> bool {
    let (plo, phi) = (p.lower, p.upper);
    match p.prefix {
        Prefix::Eq => lo >= plo && hi <= phi,
        // The value's range, widened, overlaps the resource's.
        Prefix::Ap => {
            hi >= plo.saturating_sub(p.approximation) && lo <= phi.saturating_add(p.approximation)
        }
        Prefix::Ne => !(lo >= plo && hi <= phi),
        Prefix::Gt => hi > phi,
        Prefix::Lt => lo < plo,
        Prefix::Ge => hi >= plo,
        Prefix::Le => lo <= phi,
        Prefix::Sa => lo > phi,
        Prefix::Eb => hi < plo,
    }
}

/// The range of instants (inclusive Unix seconds) of the element a date parameter searches: a
/// date/dateTime, a Period, or the `[x]` choice (`effective` means effectiveDateTime or
/// effectivePeriod). An open Period end runs to the end of time.
pub fn date_range(resource: &Value, path: &str) -> Option<(i64, i64)> {
    for key in [
        path.to_owned(),
        format!("{path}DateTime"),
        format!("{path}Period"),
        format!("{path}Instant"),
    ] {
        match resource.get(&key) {
            Some(Value::String(s)) => return date_instants(s),
            Some(Value::Object(period)) => {
                let start = period
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(date_instants);
                let end = period
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(date_instants);
                return match (start, end) {
                    (Some(s), Some(e)) => Some((s.0, e.1)),
                    (Some(s), None) => Some((s.0, i64::MAX)),
                    (None, Some(e)) => Some((i64::MIN, e.1)),
                    (None, None) => None,
                };
            }
            _ => {}
        }
    }
    None
}

/// (system, code) pairs of an element: a code, a CodeableConcept, an array of either, or
/// Identifiers (system, value).
fn tokens<'a>(resource: &'a Value, path: &str) -> Vec<(Option<&'a str>, &'a str)> {
    let mut out = Vec::new();
    let element = if path == "id" {
        resource.get("id")
    } else {
        resource.get(path)
    };
    let items: Vec<&Value> = match element {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    };
    for item in items {
        match item {
            Value::String(code) => out.push((None, code.as_str())),
            Value::Object(o) => {
                if let Some(Value::Array(codings)) = o.get("coding") {
                    for c in codings {
                        if let Some(code) = c.get("code").and_then(Value::as_str) {
                            out.push((c.get("system").and_then(Value::as_str), code));
                        }
                    }
                }
                if let Some(value) = o.get("value").and_then(Value::as_str) {
                    out.push((o.get("system").and_then(Value::as_str), value));
                }
            }
            _ => {}
        }
    }
    out
}

fn token_matches(resource: &Value, def: &ParamDef, t: &TokenParam) -> bool {
    tokens(resource, def.path).iter().any(|(system, code)| {
        let system_ok = match t.system.as_deref() {
            None => true,
            Some("") => system.is_none(),
            Some(s) => *system == Some(s),
        };
        system_ok && t.code.as_deref().is_none_or(|c| c == *code)
    })
}

fn string_matches(resource: &Value, path: &str, needle: &str) -> bool {
    let (element, field) = path.split_once('.').unwrap_or((path, ""));
    let values: Vec<&Value> = match resource.get(element) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    };
    values
        .iter()
        .filter_map(|v| {
            if field.is_empty() {
                v.as_str()
            } else {
                v.get(field).and_then(Value::as_str)
            }
        })
        .any(|s| s.to_lowercase().starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_parameter_is_refused_unless_lenient() {
        let q = pairs(&[("patient", "Patient/9990000018"), ("colour", "blue")]);
        let err = parse("Observation", &q, false).unwrap_err();
        assert_eq!(err[0].code, "not-supported");
        let ok = parse("Observation", &q, true).unwrap();
        assert_eq!(ok.ignored, vec!["colour".to_string()]);
    }

    #[test]
    fn malformed_nhs_number_and_date_are_invalid() {
        let bad_nhs = pairs(&[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9990000017")]);
        assert_eq!(
            parse("Patient", &bad_nhs, false).unwrap_err()[0].code,
            "invalid"
        );
        let bad_date = pairs(&[("patient", "9990000018"), ("date", "ge2026-13")]);
        assert_eq!(
            parse("Observation", &bad_date, false).unwrap_err()[0].code,
            "invalid"
        );
    }

    #[test]
    fn date_prefixes_compare_ranges() {
        let obs = json!({"effectiveDateTime": "2026-11-01T11:30:00Z"});
        let req = |d: &str| {
            parse(
                "Observation",
                &pairs(&[("patient", "9990000018"), ("date", d)]),
                false,
            )
            .unwrap()
        };
        assert!(req("2026-11-01").matches(&obs));
        assert!(req("2026-11").matches(&obs));
        assert!(req("ge2026-11-01").matches(&obs));
        assert!(!req("gt2026-11-01").matches(&obs));
        assert!(req("lt2026-11-02").matches(&obs));
        assert!(!req("lt2026-11-01").matches(&obs));
        assert!(req("ne2025").matches(&obs));
        assert!(req("2025,2026").matches(&obs));
    }

    fn at(now: &str, d: &str) -> SearchRequest {
        let now = date_instants(now).unwrap().0;
        parse_at(
            "Observation",
            &pairs(&[("patient", "9990000018"), ("date", d)]),
            false,
            now,
        )
        .unwrap()
    }

    #[test]
    fn item9_date_search_honours_the_offset_of_the_value_and_of_the_resource() {
        // 09:30 BST is 08:30 UTC.
        let obs = json!({"effectiveDateTime": "2026-07-01T09:30:00+01:00"});
        let now = "2026-11-25T12:00:00Z";
        assert!(at(now, "lt2026-07-01T09:00:00Z").matches(&obs));
        assert!(!at(now, "ge2026-07-01T09:00:00Z").matches(&obs));
        assert!(at(now, "ge2026-07-01T09:00:00+01:00").matches(&obs));
        assert!(at(now, "2026-07-01T08:30:00Z").matches(&obs));
        assert!(!at(now, "2026-07-01T09:30:00Z").matches(&obs));
        let utc = json!({"effectiveDateTime": "2026-07-01T08:30:00Z"});
        assert!(at(now, "2026-07-01T09:30:00+01:00").matches(&utc));
        // A value without an offset is UK local time.
        assert!(at(now, "2026-07-01T09:30").matches(&utc));
        assert!(at(now, "2026-07-01T09:30:00").matches(&utc));
    }

    #[test]
    fn item9_a_date_is_the_uk_day_across_british_summer_time() {
        // 23:30 UTC on 1 July is 00:30 BST on 2 July.
        let late = json!({"effectiveDateTime": "2026-07-01T23:30:00Z"});
        let now = "2026-11-25T12:00:00Z";
        assert!(at(now, "2026-07-02").matches(&late));
        assert!(!at(now, "2026-07-01").matches(&late));
        assert!(at(now, "2026-07").matches(&late));
        // In winter the UK day is the UTC day.
        let winter = json!({"effectiveDateTime": "2026-01-01T23:30:00Z"});
        assert!(at(now, "2026-01-01").matches(&winter));
        // The clock-change days are 23 and 25 hours long.
        let spring = date_instants("2026-03-29").unwrap();
        assert_eq!(spring.1 - spring.0 + 1, 23 * 3600);
        let autumn = date_instants("2026-10-25").unwrap();
        assert_eq!(autumn.1 - autumn.0 + 1, 25 * 3600);
        // Dates on both sides compare as the same local days.
        let onset = json!({"recordedDate": "2015-06-10"});
        let allergy = |d: &str| {
            parse(
                "AllergyIntolerance",
                &pairs(&[("patient", "9990000018"), ("date", d)]),
                false,
            )
            .unwrap()
        };
        assert!(allergy("2015-06-10").matches(&onset));
        assert!(!allergy("2015-06-11").matches(&onset));
    }

    #[test]
    fn item9_ap_is_ten_percent_of_the_gap_to_now() {
        let obs = json!({"effectiveDateTime": "2026-11-01T11:30:00Z"});
        let now = "2026-11-25T12:00:00Z";
        // 26 days before now: 2.6 days either side reaches 1 November.
        assert!(at(now, "ap2026-10-30").matches(&obs));
        // 55 days before now: 5.5 days either side stops short of it.
        assert!(!at(now, "ap2026-10-01").matches(&obs));
        assert!(at(now, "ap2026-11-01").matches(&obs));
        // At now itself there is no widening.
        let moment = json!({"effectiveDateTime": "2026-11-25T12:00:00Z"});
        assert!(at(now, "ap2026-11-25T12:00:00Z").matches(&moment));
        assert!(!at(now, "ap2026-11-25T12:00:01Z").matches(&moment));
    }

    #[test]
    fn item9_date_bounds_are_utc_instants_for_the_store() {
        let d = parse_date_at("ge2026-11-05T10:00:00+01:00", 0).unwrap();
        assert_eq!(d.lower_instant(), "2026-11-05T09:00:00Z");
        let d = parse_date_at("2026-07-02", 0).unwrap();
        assert_eq!(
            (d.lower_instant().as_str(), d.upper_instant().as_str()),
            ("2026-07-01T23:00:00Z", "2026-07-02T22:59:59Z")
        );
        for bad in [
            "2026-13",
            "2026-07-01T25:00:00Z",
            "2026-07-01T10:00:00+1:00",
            "2026-07-01T10:00:00+15:00",
            "2026-07-01T10",
            "2026-07-01T10:00:00.Z",
            "2026-07-01T10:00:00Zx",
            "2026-07-01T1\u{e9}:00:00Z",
        ] {
            assert!(parse_date_at(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_match_codings_with_and_without_system() {
        let obs = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "status": "final"});
        let req = |k: &str, v: &str| {
            parse(
                "Observation",
                &pairs(&[("patient", "9990000018"), (k, v)]),
                false,
            )
            .unwrap()
        };
        assert!(req("code", "2823-3").matches(&obs));
        assert!(req("code", "http://loinc.org|2823-3").matches(&obs));
        assert!(!req("code", "http://snomed.info/sct|2823-3").matches(&obs));
        assert!(req("status", "final").matches(&obs));
        assert!(!req("status", "preliminary").matches(&obs));
    }

    #[test]
    fn clinical_searches_need_one_patient() {
        assert_eq!(
            parse("Observation", &pairs(&[("code", "x")]), false).unwrap_err()[0].code,
            "required"
        );
        let r = parse(
            "Flag",
            &pairs(&[("patient", "https://x/fhir/Patient/9990000018")]),
            false,
        )
        .unwrap();
        assert_eq!(r.patient(), Some("9990000018"));
    }
}
