//! Small builders for the JSON shapes every source emits, so that a coding or a source label is
//! spelled the same way everywhere.

use serde_json::{json, Map, Value};

use crate::systems;

pub fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut c = Map::new();
    c.insert("system".into(), system.into());
    c.insert("code".into(), code.into());
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        c.insert("display".into(), d.into());
    }
    Value::Object(c)
}

pub fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [coding(system, code, Some(display))], "text": display })
}

pub fn text_concept(text: &str) -> Value {
    json!({ "text": text })
}

pub fn nhs_number_identifier(nhs_number: &str) -> Value {
    json!({ "system": systems::NHS_NUMBER, "value": nhs_number })
}

pub fn local_identifier(source_name: &str, value: &str) -> Value {
    json!({ "system": format!("{}/{}", systems::LOCAL_ID_BASE, source_name), "value": value })
}

pub fn patient_reference(nhs_number: &str) -> Value {
    json!({ "reference": format!("Patient/{nhs_number}") })
}

pub fn organisation_reference(ods: &str, name: Option<&str>) -> Value {
    let mut r = json!({ "identifier": { "system": systems::ODS_CODE, "value": ods } });
    if let Some(n) = name {
        r["display"] = n.into();
    }
    r
}

/// `meta` for a resource from a source: UK Core profile, `meta.source` naming the source system,
/// and tags with the holding organisation's ODS code and the source's name, so a viewer can label
/// every item with where it came from.
pub fn source_meta(resource_type: &str, source_name: &str, ods: &str, last_updated: Option<&str>) -> Value {
    let mut meta = json!({
        "profile": [systems::uk_core_profile(resource_type)],
        "source": format!("urn:scr:source:{source_name}"),
        "tag": [
            coding(systems::ODS_CODE, ods, None),
            coding(systems::SOURCE_SYSTEM_TAG, source_name, None),
        ],
    });
    if let Some(lu) = last_updated.and_then(instant) {
        meta["lastUpdated"] = lu.into();
    }
    meta
}

/// A FHIR `instant` from a native timestamp or date (`YYYY-MM-DD` becomes midnight UTC).
pub fn instant(native: &str) -> Option<String> {
    let s = native.trim();
    if s.len() == 10 && is_date(s) {
        return Some(format!("{s}T00:00:00Z"));
    }
    date_time(s)
}

/// A FHIR `dateTime` from an ISO date or timestamp, as held natively.
pub fn date_time(native: &str) -> Option<String> {
    let s = native.trim();
    if is_date(s) {
        return Some(s.to_owned());
    }
    if s.len() >= 19 && is_date(&s[..10]) && s.as_bytes()[10] == b'T' {
        let rest = &s[19..];
        return Some(if rest.is_empty() { format!("{}Z", &s[..19]) } else { s.to_owned() });
    }
    None
}

/// True for `YYYY`, `YYYY-MM` or `YYYY-MM-DD` with plausible digits.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7) && in_range(&b[5..7], b"01", b"12"),
        10 => {
            digits(0..4)
                && b[4] == b'-'
                && digits(5..7)
                && b[7] == b'-'
                && digits(8..10)
                && in_range(&b[5..7], b"01", b"12")
                && in_range(&b[8..10], b"01", b"31")
        }
        _ => false,
    }
}

fn in_range(two: &[u8], lo: &[u8], hi: &[u8]) -> bool {
    two >= lo && two <= hi
}

/// A decimal from a native single-precision column, printed with the digits the source holds
/// (PostgreSQL `REAL` is 4 bytes: 5.9 must not become 5.900000095367432).
pub fn decimal_from_f32(v: f32) -> Value {
    let shortest = format!("{v}");
    shortest.parse::<f64>().map(Value::from).unwrap_or(Value::Null)
}

/// Drops `null` members and empty arrays/objects recursively: FHIR forbids empty elements.
pub fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                prune(v);
            }
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                prune(v);
            }
            items.retain(|v| !is_empty(v));
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_dates_become_fhir_dates_and_instants() {
        assert_eq!(date_time("2026-11-01").as_deref(), Some("2026-11-01"));
        assert_eq!(date_time("2026-11-01T09:30:00").as_deref(), Some("2026-11-01T09:30:00Z"));
        assert_eq!(date_time("2026-11-01T09:30:00Z").as_deref(), Some("2026-11-01T09:30:00Z"));
        assert_eq!(instant("2026-11-01").as_deref(), Some("2026-11-01T00:00:00Z"));
        assert_eq!(date_time("01/11/2026"), None);
        assert!(!is_date("2026-13-01"));
    }

    #[test]
    fn single_precision_values_keep_their_digits() {
        assert_eq!(decimal_from_f32(5.9), serde_json::json!(5.9));
        assert_eq!(decimal_from_f32(139.0), serde_json::json!(139.0));
    }

    #[test]
    fn prune_removes_empty_elements() {
        let mut v = serde_json::json!({"a": null, "b": [], "c": {"d": ""}, "e": [1, {}], "f": "x"});
        prune(&mut v);
        assert_eq!(v, serde_json::json!({"e": [1], "f": "x"}));
    }
}
