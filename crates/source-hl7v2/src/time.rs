//! HL7 v2 timestamps (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]`) as FHIR dates and dateTimes.
//!
//! A timestamp without an offset is taken as UTC (`Z`). FHIR requires seconds and a zone on any
//! dateTime that has a time, so `HHMM` gains `:00`. [`Hl7Time::utc_instant`] gives a fixed-width
//! UTC instant used to order messages (the latest wins).

/// How much of a timestamp was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Time,
}

/// A validated HL7 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Time {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Digits after the decimal point, as sent.
    fraction: String,
    /// Offset from UTC in minutes, when sent.
    offset_minutes: Option<i32>,
    precision: Precision,
}

impl Hl7Time {
    /// Parses an HL7 `TS`/`DTM`/`DT` value (the first component of the field). `None` for
    /// anything that is not a valid timestamp.
    pub fn parse(value: &str) -> Option<Hl7Time> {
        let value = value.trim();
        let (body, offset_minutes) = match value.find(['+', '-']) {
            Some(i) => (&value[..i], Some(parse_offset(&value[i..])?)),
            None => (value, None),
        };
        let (digits, fraction) = match body.split_once('.') {
            Some((d, f))
                if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (d, f.to_owned())
            }
            Some(_) => return None,
            None => (body, String::new()),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit())
            || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        {
            return None;
        }
        if !fraction.is_empty() && digits.len() != 14 {
            return None;
        }
        let num =
            |r: std::ops::Range<usize>| digits.get(r).map_or(Some(0), |s| s.parse::<u32>().ok());
        let year = i32::try_from(num(0..4)?).ok()?;
        let month = if digits.len() >= 6 { num(4..6)? } else { 1 };
        let day = if digits.len() >= 8 { num(6..8)? } else { 1 };
        let hour = if digits.len() >= 10 { num(8..10)? } else { 0 };
        let minute = if digits.len() >= 12 { num(10..12)? } else { 0 };
        let second = if digits.len() >= 14 { num(12..14)? } else { 0 };
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid || year == 0 {
            return None;
        }
        let precision = match digits.len() {
            4 => Precision::Year,
            6 => Precision::Month,
            8 => Precision::Day,
            _ => Precision::Time,
        };
        if precision < Precision::Time && offset_minutes.is_some() {
            // An offset on a bare date is meaningless in FHIR; drop it.
            return Some(Hl7Time {
                year,
                month,
                day,
                hour,
                minute,
                second,
                fraction,
                offset_minutes: None,
                precision,
            });
        }
        Some(Hl7Time {
            year,
            month,
            day,
            hour,
            minute,
            second,
            fraction,
            offset_minutes,
            precision,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A FHIR `date` at the precision sent (a time part is dropped).
    pub fn fhir_date(&self) -> String {
        match self.precision {
            Precision::Year => format!("{:04}", self.year),
            Precision::Month => format!("{:04}-{:02}", self.year, self.month),
            Precision::Day | Precision::Time => {
                format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
            }
        }
    }

    /// A FHIR `dateTime` at the precision sent; with a time, seconds and zone are always present.
    pub fn fhir_date_time(&self) -> String {
        if self.precision < Precision::Time {
            return self.fhir_date();
        }
        let fraction = if self.fraction.is_empty() {
            String::new()
        } else {
            format!(".{}", self.fraction)
        };
        let zone = match self.offset_minutes {
            None | Some(0) => "Z".to_owned(),
            Some(m) => format!(
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            ),
        };
        format!(
            "{}T{:02}:{:02}:{:02}{fraction}{zone}",
            self.fhir_date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// A FHIR `instant`: a bare date becomes midnight.
    pub fn fhir_instant(&self) -> String {
        if self.precision < Precision::Time {
            return format!(
                "{:04}-{:02}-{:02}T00:00:00Z",
                self.year, self.month, self.day
            );
        }
        self.fhir_date_time()
    }

    /// The moment in UTC as `YYYY-MM-DDTHH:MM:SSZ`: fixed width, so it orders as text.
    pub fn utc_instant(&self) -> String {
        let minutes = days_from_civil(self.year, self.month, self.day) * 1440
            + i64::from(self.hour * 60 + self.minute)
            - i64::from(self.offset_minutes.unwrap_or(0));
        let (days, minute_of_day) = (minutes.div_euclid(1440), minutes.rem_euclid(1440));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            minute_of_day / 60,
            minute_of_day % 60,
            self.second
        )
    }
}

fn parse_offset(s: &str) -> Option<i32> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits = &s[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian), after Howard Hinnant's algorithm.
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An HL7 timestamp for `now` (an ISO 8601 instant such as `2026-11-01T09:30:00Z`), for the
/// ACK's MSH-7. Falls back to the digits found when `now` is in another shape.
pub fn hl7_from_iso(now: &str) -> String {
    let digits: String = now.chars().take(19).filter(char::is_ascii_digit).collect();
    digits.chars().take(14).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Hl7Time, String> {
        Hl7Time::parse(s).ok_or_else(|| format!("{s} did not parse"))
    }

    #[test]
    fn hl7_timestamps_become_fhir_dates_and_date_times() -> Result<(), String> {
        assert_eq!(t("19700102")?.fhir_date(), "1970-01-02");
        assert_eq!(t("19700102")?.fhir_date_time(), "1970-01-02");
        assert_eq!(t("197001")?.fhir_date_time(), "1970-01");
        assert_eq!(
            t("20261101093000")?.fhir_date_time(),
            "2026-11-01T09:30:00Z"
        );
        assert_eq!(t("202611010930")?.fhir_date_time(), "2026-11-01T09:30:00Z");
        assert_eq!(t("2026110109")?.fhir_date_time(), "2026-11-01T09:00:00Z");
        assert_eq!(
            t("20260701093000.25+0100")?.fhir_date_time(),
            "2026-07-01T09:30:00.25+01:00"
        );
        assert_eq!(t("20261101")?.fhir_instant(), "2026-11-01T00:00:00Z");
        assert_eq!(
            t("20261101093000+0000")?.fhir_date_time(),
            "2026-11-01T09:30:00Z"
        );
        Ok(())
    }

    #[test]
    fn utc_instants_apply_the_offset_across_midnight() -> Result<(), String> {
        assert_eq!(
            t("20260701003000+0100")?.utc_instant(),
            "2026-06-30T23:30:00Z"
        );
        assert_eq!(
            t("20261231233000-0100")?.utc_instant(),
            "2027-01-01T00:30:00Z"
        );
        assert_eq!(t("20240229")?.utc_instant(), "2024-02-29T00:00:00Z");
        Ok(())
    }

    #[test]
    fn invalid_timestamps_are_refused() {
        for bad in [
            "",
            "x",
            "20261301",
            "20260230",
            "20261101250000",
            "2026110109300",
            "20261101+01",
            "20261101093000.12345",
        ] {
            assert_eq!(Hl7Time::parse(bad), None, "{bad}");
        }
        assert!(Hl7Time::parse("2026").is_some());
    }

    #[test]
    fn iso_now_becomes_an_hl7_timestamp() {
        assert_eq!(hl7_from_iso("2026-11-01T09:30:05Z"), "20261101093005");
    }
}
