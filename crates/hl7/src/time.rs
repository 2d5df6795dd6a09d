//! HL7 v2 timestamps (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]`) as FHIR dates and dateTimes.
//!
//! Trusts send local time. A timestamp without an offset is the sending facility's local time
//! ([`Hl7Time::in_zone`], `hl7.facilities.<ODS>.time_zone`, Europe/London by default): 09:30 in
//! July is `09:30:00+01:00`, 09:30 in November `09:30:00Z`. A time the clocks skip (01:30 on the
//! spring-forward Sunday) is moved forward by the gap (`02:30:00+01:00`); a time that happens
//! twice (01:30 on the autumn Sunday) is the earlier, BST one (`01:30:00+01:00`); see
//! `scr_fhir::zone`. A timestamp with an explicit offset keeps it. FHIR requires seconds and a
//! zone on any dateTime that has a time, so `HHMM` gains `:00`. [`Hl7Time::utc_instant`] gives a
//! fixed-width UTC instant used to order messages (the latest wins).

use jiff::tz::TimeZone;

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
    /// Offset from UTC in minutes, when sent (or resolved by [`Hl7Time::in_zone`]).
    offset_minutes: Option<i32>,
    /// For a bare date read in a zone: the offset at its local midnight.
    date_offset_minutes: Option<i32>,
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
                date_offset_minutes: None,
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
            date_offset_minutes: None,
            precision,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The timestamp read in `zone` when it was sent without an offset: the offset in force at
    /// that local time is attached (a skipped time moves forward by the gap, a repeated one is
    /// the earlier). A bare date stays a date; its midnight is `zone`'s for [`Self::fhir_instant`]
    /// and [`Self::utc_instant`]. A timestamp that carries an offset is returned unchanged.
    pub fn in_zone(mut self, zone: &TimeZone) -> Hl7Time {
        if self.offset_minutes.is_some() {
            return self;
        }
        let date = (self.year, self.month, self.day);
        let Some(unix) =
            scr_fhir::zone::local_to_unix(zone, date, (self.hour, self.minute, self.second))
        else {
            return self;
        };
        let Some(offset) = scr_fhir::zone::offset_at(zone, unix) else {
            return self;
        };
        if self.precision < Precision::Time {
            self.date_offset_minutes = Some(offset / 60);
            return self;
        }
        // Local fields as the zone shows the instant (differs from those sent only in a gap).
        let local = unix + i64::from(offset);
        let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let (Ok(y), Ok(m), Ok(d), Ok(secs)) = (
            i32::try_from(y),
            u32::try_from(m),
            u32::try_from(d),
            u32::try_from(secs),
        ) else {
            return self;
        };
        (self.year, self.month, self.day) = (y, m, d);
        (self.hour, self.minute, self.second) = (secs / 3600, secs / 60 % 60, secs % 60);
        self.offset_minutes = Some(offset / 60);
        self
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
        let zone = zone_suffix(self.offset_minutes);
        format!(
            "{}T{:02}:{:02}:{:02}{fraction}{zone}",
            self.fhir_date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// A FHIR `instant`: a bare date becomes midnight (local midnight when read in a zone).
    pub fn fhir_instant(&self) -> String {
        if self.precision < Precision::Time {
            return format!(
                "{:04}-{:02}-{:02}T00:00:00{}",
                self.year,
                self.month,
                self.day,
                zone_suffix(self.date_offset_minutes)
            );
        }
        self.fhir_date_time()
    }

    /// The moment in UTC as `YYYY-MM-DDTHH:MM:SSZ`: fixed width, so it orders as text.
    pub fn utc_instant(&self) -> String {
        let minutes = days_from_civil(self.year, self.month, self.day) * 1440
            + i64::from(self.hour * 60 + self.minute)
            - i64::from(
                self.offset_minutes
                    .or(self.date_offset_minutes)
                    .unwrap_or(0),
            );
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

/// `Z` for UTC (or no offset), `+01:00` otherwise.
fn zone_suffix(offset_minutes: Option<i32>) -> String {
    match offset_minutes {
        None | Some(0) => "Z".to_owned(),
        Some(m) => format!(
            "{}{:02}:{:02}",
            if m < 0 { '-' } else { '+' },
            m.abs() / 60,
            m.abs() % 60
        ),
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

    fn london(s: &str) -> Result<Hl7Time, String> {
        Ok(t(s)?.in_zone(&scr_fhir::zone::by_name("Europe/London")?))
    }

    #[test]
    fn item9_hl7_local_time_bst_is_an_hour_ahead_of_utc() -> Result<(), String> {
        let summer = london("20260701093000")?;
        assert_eq!(summer.fhir_date_time(), "2026-07-01T09:30:00+01:00");
        assert_eq!(summer.utc_instant(), "2026-07-01T08:30:00Z");
        assert_eq!(
            london("202607010930")?.fhir_date_time(),
            "2026-07-01T09:30:00+01:00"
        );
        // Just after midnight in summer is the previous day in UTC.
        assert_eq!(
            london("20260701003000")?.utc_instant(),
            "2026-06-30T23:30:00Z"
        );
        Ok(())
    }

    #[test]
    fn item9_hl7_local_time_gmt_in_winter_is_utc() -> Result<(), String> {
        let winter = london("20261101093000")?;
        assert_eq!(winter.fhir_date_time(), "2026-11-01T09:30:00Z");
        assert_eq!(winter.utc_instant(), "2026-11-01T09:30:00Z");
        Ok(())
    }

    #[test]
    fn item9_hl7_local_time_in_the_spring_gap_moves_forward() -> Result<(), String> {
        // 01:30 on 29 March 2026 does not exist in London: the clocks go from 01:00 to 02:00.
        let gap = london("20260329013000")?;
        assert_eq!(gap.fhir_date_time(), "2026-03-29T02:30:00+01:00");
        assert_eq!(gap.utc_instant(), "2026-03-29T01:30:00Z");
        // Either side of the gap.
        assert_eq!(
            london("20260329005900")?.utc_instant(),
            "2026-03-29T00:59:00Z"
        );
        assert_eq!(
            london("20260329020000")?.utc_instant(),
            "2026-03-29T01:00:00Z"
        );
        Ok(())
    }

    #[test]
    fn item9_hl7_local_time_in_the_autumn_overlap_is_the_earlier_bst() -> Result<(), String> {
        // 01:30 on 25 October 2026 happens twice in London: first in BST.
        let twice = london("20261025013000")?;
        assert_eq!(twice.fhir_date_time(), "2026-10-25T01:30:00+01:00");
        assert_eq!(twice.utc_instant(), "2026-10-25T00:30:00Z");
        assert_eq!(
            london("20261025023000")?.utc_instant(),
            "2026-10-25T02:30:00Z"
        );
        Ok(())
    }

    #[test]
    fn item9_hl7_explicit_offsets_keep_their_offset() -> Result<(), String> {
        assert_eq!(
            london("20260701093000+0000")?.fhir_date_time(),
            "2026-07-01T09:30:00Z"
        );
        assert_eq!(
            london("20261101093000+0100")?.fhir_date_time(),
            "2026-11-01T09:30:00+01:00"
        );
        assert_eq!(
            london("20260701093000-0500")?.utc_instant(),
            "2026-07-01T14:30:00Z"
        );
        Ok(())
    }

    #[test]
    fn item9_hl7_dates_stay_dates_with_a_local_midnight() -> Result<(), String> {
        let d = london("20260701")?;
        assert_eq!(d.fhir_date_time(), "2026-07-01");
        assert_eq!(d.fhir_instant(), "2026-07-01T00:00:00+01:00");
        assert_eq!(d.utc_instant(), "2026-06-30T23:00:00Z");
        // Another configured zone.
        let ny = t("20260701093000")?.in_zone(&scr_fhir::zone::by_name("America/New_York")?);
        assert_eq!(ny.fhir_date_time(), "2026-07-01T09:30:00-04:00");
        Ok(())
    }

    #[test]
    fn iso_now_becomes_an_hl7_timestamp() {
        assert_eq!(hl7_from_iso("2026-11-01T09:30:05Z"), "20261101093005");
    }
}
