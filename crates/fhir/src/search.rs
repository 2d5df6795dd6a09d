//! Search parameters: which ones each resource type supports, parsing them from a query string
//! (with clear errors naming the parameter), and matching a resource against them in memory.
//!
//! The facade fetches a patient's records from every source in one batch and filters here, so one
//! definition of each parameter serves every source. Date comparisons work on the text of FHIR
//! dates padded to their precision's range (`2026-11` is `2026-11-01T00:00:00` to
//! `2026-11-31T23:59:59`; an impossible day 31 is harmless lexicographically). Time zones other
//! than `Z` are compared by their local time: every native source here records UTC.

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
];
const MEDICATION: &[ParamDef] = &[
    p("patient", Reference, "subject", "Required: Patient/{id}"),
    p("status", Token, "status", "active | completed | entered-in-error | intended | stopped | on-hold | unknown | not-taken"),
    p("category", Token, "category", "inpatient | outpatient | community | patientspecified"),
    p("code", Token, "medicationCodeableConcept", "dm+d code"),
    p("effective", Date, "effective", "Date the course was taken (effectivePeriod)"),
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

/// A date parameter: the prefix and the inclusive text range its value denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateParam {
    pub prefix: Prefix,
    pub lower: String,
    pub upper: String,
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

    /// Does `resource` satisfy every criterion (the patient one is the caller's job)?
    pub fn matches(&self, resource: &Value) -> bool {
        self.criteria.iter().all(|(def, values)| {
            values.iter().any(|c| match c {
                Criterion::Patient(_) => true,
                Criterion::Token(t) => token_matches(resource, def, t),
                Criterion::Date(d) => {
                    date_range(resource, def.path).is_some_and(|(lo, hi)| date_matches(d, &lo, &hi))
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
                Some(def) => match parse_values(def, modifier, value) {
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
    if req.patient().is_none() {
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
            ParamKind::Date => Criterion::Date(parse_date(v).map_err(|m| invalid(def.name, m))?),
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

/// Parses a date parameter value with an optional two-letter prefix.
pub fn parse_date(v: &str) -> Result<DateParam, String> {
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
    let (lower, upper) = date_text_range(rest).ok_or_else(|| format!("'{v}' is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ, optionally prefixed eq ne gt lt ge le sa eb ap)"))?;
    Ok(DateParam {
        prefix,
        lower,
        upper,
    })
}

/// The inclusive range a FHIR date or dateTime denotes, as comparable text.
pub fn date_text_range(v: &str) -> Option<(String, String)> {
    if build::is_date(v) {
        let (lo_pad, hi_pad) = match v.len() {
            4 => ("-01-01T00:00:00", "-12-31T23:59:59"),
            7 => ("-01T00:00:00", "-31T23:59:59"),
            _ => ("T00:00:00", "T23:59:59"),
        };
        return Some((format!("{v}{lo_pad}"), format!("{v}{hi_pad}")));
    }
    let dt = build::date_time(v)?;
    let local = dt.get(..19)?;
    let b = local.as_bytes();
    let ok = b[13] == b':'
        && b[16] == b':'
        && [11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    ok.then(|| (local.to_owned(), local.to_owned()))
}

fn date_matches(p: &DateParam, lo: &str, hi: &str) -> bool {
    let (plo, phi) = (p.lower.as_str(), p.upper.as_str());
    match p.prefix {
        Prefix::Eq | Prefix::Ap => lo >= plo && hi <= phi,
        Prefix::Ne => !(lo >= plo && hi <= phi),
        Prefix::Gt => hi > phi,
        Prefix::Lt => lo < plo,
        Prefix::Ge => hi >= plo,
        Prefix::Le => lo <= phi,
        Prefix::Sa => lo > phi,
        Prefix::Eb => hi < plo,
    }
}

/// The date range of the element a date parameter searches: a date/dateTime, a Period, or the
/// `[x]` choice (`effective` means effectiveDateTime or effectivePeriod).
pub fn date_range(resource: &Value, path: &str) -> Option<(String, String)> {
    for key in [
        path.to_owned(),
        format!("{path}DateTime"),
        format!("{path}Period"),
        format!("{path}Instant"),
    ] {
        match resource.get(&key) {
            Some(Value::String(s)) => return date_text_range(s),
            Some(Value::Object(period)) => {
                let start = period
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(date_text_range);
                let end = period
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(date_text_range);
                return match (start, end) {
                    (Some(s), Some(e)) => Some((s.0, e.1)),
                    (Some(s), None) => Some((s.0, "9999-12-31T23:59:59".into())),
                    (None, Some(e)) => Some(("0000-01-01T00:00:00".into(), e.1)),
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
