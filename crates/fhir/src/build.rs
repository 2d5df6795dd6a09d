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
pub fn source_meta(
    resource_type: &str,
    source_name: &str,
    ods: &str,
    last_updated: Option<&str>,
) -> Value {
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
    // `get`, not indexing: a byte offset inside a multibyte character is not a date, and must
    // not panic (any client can send one in an alert's `period.start`).
    let (Some(day), Some(time), Some(rest)) = (s.get(..10), s.get(..19), s.get(19..)) else {
        return None;
    };
    if is_date(day) && s.as_bytes()[10] == b'T' {
        return Some(if rest.is_empty() {
            format!("{time}Z")
        } else {
            s.to_owned()
        });
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
                && day_exists(s)
        }
        _ => false,
    }
}

/// Whether `YYYY-MM-DD` (already checked for shape) names a day of the calendar: no 30 February,
/// no 31 April.
fn day_exists(s: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        s[..4].parse::<i64>(),
        s[5..7].parse::<u32>(),
        s[8..10].parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

fn in_range(two: &[u8], lo: &[u8], hi: &[u8]) -> bool {
    two >= lo && two <= hi
}

/// A decimal from a native single-precision column, printed with the digits the source holds
/// (PostgreSQL `REAL` is 4 bytes: 5.9 must not become 5.900000095367432).
pub fn decimal_from_f32(v: f32) -> Value {
    let shortest = format!("{v}");
    shortest
        .parse::<f64>()
        .map(Value::from)
        .unwrap_or(Value::Null)
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
        assert_eq!(
            date_time("2026-11-01T09:30:00").as_deref(),
            Some("2026-11-01T09:30:00Z")
        );
        assert_eq!(
            date_time("2026-11-01T09:30:00Z").as_deref(),
            Some("2026-11-01T09:30:00Z")
        );
        assert_eq!(
            instant("2026-11-01").as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
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

/// The UCUM code for a unit as native systems spell it, when it has one we recognise.
pub fn ucum_code(unit: &str) -> Option<&'static str> {
    Some(match unit.trim() {
        "mmHg" | "mm[Hg]" => "mm[Hg]",
        "kg" => "kg",
        "g" => "g",
        "cm" => "cm",
        "m" => "m",
        "kg/m2" | "kg/m^2" => "kg/m2",
        "%" => "%",
        "mmol/L" | "mmol/l" => "mmol/L",
        "mmol/mol" => "mmol/mol",
        "umol/L" | "umol/l" | "µmol/L" => "umol/L",
        "g/L" | "g/l" => "g/L",
        "g/dL" => "g/dL",
        "mg/L" => "mg/L",
        "U/L" | "IU/L" => "U/L",
        "10*9/L" | "x10^9/L" | "10^9/L" => "10*9/L",
        "10*12/L" | "x10^12/L" => "10*12/L",
        "mL/min/1.73m2" => "mL/min/{1.73_m2}",
        "/min" | "bpm" | "beats/min" => "/min",
        "Cel" | "degC" | "°C" => "Cel",
        "fL" => "fL",
        "pg" => "pg",
        "ng/mL" => "ng/mL",
        "mU/L" | "mIU/L" => "m[IU]/L",
        _ => return None,
    })
}

/// A Quantity: UCUM-coded when the unit is recognised, the native unit text always kept.
pub fn quantity(value: Value, unit: Option<&str>) -> Value {
    let mut q = json!({ "value": value });
    if let Some(u) = unit.filter(|u| !u.trim().is_empty()) {
        q["unit"] = u.into();
        if let Some(code) = ucum_code(u) {
            q["system"] = systems::UCUM.into();
            q["code"] = code.into();
        }
    }
    q
}

/// Today's date (UTC) as `YYYY-MM-DD`, and now as an instant, from the system clock.
pub fn today_and_now() -> (String, String) {
    let now = instant_from_unix(unix_now());
    (now[..10].to_owned(), now)
}

/// Seconds since the Unix epoch by the system clock (0 if the clock reads before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as a FHIR instant (`YYYY-MM-DDThh:mm:ssZ`), proleptic Gregorian, UTC.
pub fn instant_from_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a FHIR `dateTime` that has a time (`YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`),
/// honouring its offset; `None` for anything else, including dates without a time (whose
/// instant is not known) and impossible times.
pub fn unix_of_date_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (day, time) = (s.get(..10)?, s.get(10..)?);
    if !is_date(day) || !time.starts_with('T') {
        return None;
    }
    let days = days_of(day)?;
    let clock = time.get(1..9)?;
    let b = clock.as_bytes();
    if b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = clock.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut rest = time.get(9..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (rest.get(1..3)?, rest.get(4..6)?);
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 14 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days * 86_400 + h * 3600 + m * 60 + sec.min(59) - offset)
}

/// A FHIR `dateTime` as a UTC instant (`YYYY-MM-DDThh:mm:ssZ`) when it has a time, so that
/// values sent with different offsets order correctly as text; a date is returned as it is.
pub fn utc_date_time(s: &str) -> Option<String> {
    let s = s.trim();
    if is_date(s) {
        return Some(s.to_owned());
    }
    unix_of_date_time(s).map(instant_from_unix)
}

/// Parses the date part of an ISO date or timestamp into days since 1970-01-01.
pub fn days_of(iso: &str) -> Option<i64> {
    let d = iso.get(..10)?;
    if !is_date(d) {
        return None;
    }
    Some(days_from_civil(
        d[..4].parse().ok()?,
        d[5..7].parse().ok()?,
        d[8..10].parse().ok()?,
    ))
}

#[cfg(test)]
mod calendar_tests {
    use super::*;

    #[test]
    fn item7_date_times_with_offsets_become_utc_instants() {
        assert_eq!(
            utc_date_time("2026-03-01T09:00:00+01:00").as_deref(),
            Some("2026-03-01T08:00:00Z")
        );
        assert_eq!(
            utc_date_time("2026-03-01T00:30:00.123+01:00").as_deref(),
            Some("2026-02-28T23:30:00Z")
        );
        assert_eq!(
            utc_date_time("2026-03-01T23:30:00-01:00").as_deref(),
            Some("2026-03-02T00:30:00Z")
        );
        assert_eq!(utc_date_time("2026-03-01").as_deref(), Some("2026-03-01"));
        for bad in [
            "2026-03-01T25:00:00Z",
            "2026-03-01T09:00:00",
            "2026-03-01T09:00:00+1:00",
            "2026-02-30T09:00:00Z",
            "2026-03-01T09:00:00.Z",
            "2026-03-01T09:00:00+01:00junk",
            "2026-03-01T09:0é:00Z",
            "2026-03-01Té",
        ] {
            assert_eq!(utc_date_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn impossible_dates_are_not_dates() {
        assert!(!is_date("2026-02-30"));
        assert!(!is_date("2026-04-31"));
        assert!(!is_date("2025-02-29"));
        assert!(is_date("2024-02-29"));
        assert!(is_date("2000-02-29"));
        assert!(!is_date("1900-02-29"));
        assert!(is_date("2026-12-31"));
    }

    #[test]
    fn multibyte_characters_in_a_date_time_are_refused_not_a_panic() {
        assert_eq!(date_time("2026-11-2\u{e9}T10:00:00Z"), None);
        assert_eq!(date_time("2026-11-25T10:00:0\u{e9}"), None);
        assert_eq!(date_time("2026-11-25\u{e9}10:00:00"), None);
        assert_eq!(
            instant("\u{1f600}\u{1f600}\u{1f600}\u{1f600}\u{1f600}"),
            None
        );
        assert_eq!(
            date_time("2026-11-25T10:00:00").as_deref(),
            Some("2026-11-25T10:00:00Z")
        );
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(instant_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(instant_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
        let days = days_of("2024-02-29").unwrap();
        assert_eq!(civil_from_days(days), (2024, 2, 29));
        assert_eq!(
            days_of("2026-03-01").unwrap() - days_of("2026-02-28").unwrap(),
            1
        );
    }
}
