//! Calendar arithmetic on days since 1970-01-01 (proleptic Gregorian), enough to write every
//! date relative to `Options::today` without a date crate. Algorithms from Howard Hinnant's
//! `chrono`-compatible date algorithms.

/// Days since 1970-01-01.
pub(crate) type Day = i64;

pub(crate) fn from_civil(y: i64, m: u32, d: u32) -> Day {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn to_civil(day: Day) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `YYYY-MM-DD` strictly (a real calendar date, years 1900-2999).
pub(crate) fn parse(value: &str) -> Option<Day> {
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(&value[0..4])?, num(&value[5..7])?, num(&value[8..10])?);
    if !(1900..=2999).contains(&y) || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let day = from_civil(y, m as u32, d as u32);
    (to_civil(day) == (y, m as u32, d as u32)).then_some(day)
}

/// `YYYY-MM-DD`.
pub(crate) fn iso(day: Day) -> String {
    let (y, m, d) = to_civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ`, `seconds` into the day.
pub(crate) fn iso_time(day: Day, seconds: u32) -> String {
    let (h, mi, s) = hms(seconds);
    format!("{}T{h:02}:{mi:02}:{s:02}Z", iso(day))
}

/// HL7 v2 `DT`: `YYYYMMDD`.
pub(crate) fn hl7_date(day: Day) -> String {
    let (y, m, d) = to_civil(day);
    format!("{y:04}{m:02}{d:02}")
}

/// HL7 v2 `TS`: `YYYYMMDDHHMMSS`.
pub(crate) fn hl7_time(day: Day, seconds: u32) -> String {
    let (h, mi, s) = hms(seconds);
    format!("{}{h:02}{mi:02}{s:02}", hl7_date(day))
}

/// Seconds since 1970-01-01T00:00:00Z.
pub(crate) type Ts = i64;

pub(crate) fn ts(day: Day, seconds: u32) -> Ts {
    day * 86_400 + i64::from(seconds)
}

/// HL7 v2 `TS` of an instant, with its UTC offset (`+0000`): the feed reads a time without an
/// offset as the trust's local time, and these instants are UTC.
pub(crate) fn hl7_ts(at: Ts) -> String {
    format!(
        "{}+0000",
        hl7_time(at.div_euclid(86_400), at.rem_euclid(86_400) as u32)
    )
}

fn hms(seconds: u32) -> (u32, u32, u32) {
    let seconds = seconds % 86_400;
    (seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Whole years between `dob` and `on`.
pub(crate) fn age(dob: Day, on: Day) -> i64 {
    let (y1, m1, d1) = to_civil(dob);
    let (y2, m2, d2) = to_civil(on);
    y2 - y1 - i64::from((m2, d2) < (m1, d1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_dates() {
        assert_eq!(from_civil(1970, 1, 1), 0);
        for day in [-40_000, -1, 0, 59, 60, 11_016, 20_000, 30_000] {
            let (y, m, d) = to_civil(day);
            assert_eq!(from_civil(y, m, d), day);
        }
        assert_eq!(parse("2026-03-01").map(iso).as_deref(), Some("2026-03-01"));
        assert_eq!(
            parse("2024-02-29").map(|d| iso(d + 1)).as_deref(),
            Some("2024-03-01")
        );
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "",
            "2026-01-0a",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            age(
                parse("1970-01-02").unwrap_or(0),
                parse("2026-01-01").unwrap_or(0)
            ),
            55
        );
        assert_eq!(iso_time(0, 3661), "1970-01-01T01:01:01Z");
        assert_eq!(hl7_time(0, 3661), "19700101010101");
    }
}
