//! Time zones by IANA name, from the time zone database bundled into the binary (jiff's
//! `tzdb-bundle-always`): local times never depend on the host's `/usr/share/zoneinfo`, and every
//! machine converts them alike.
//!
//! Local times that the clocks skip or repeat are resolved the "compatible" way (RFC 5545, and
//! what `java.time` and Temporal do): a time in the spring-forward gap is moved forward by the
//! length of the gap (01:30 on 2026-03-29 in Europe/London is 02:30 BST), and a time in the
//! autumn overlap is the earlier of the two (01:30 on 2026-10-25 is 01:30 BST, 00:30 UTC).

use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The zone of the region the facade serves: local times without an offset, and dates, are read
/// in it unless a facility is configured otherwise.
pub const DEFAULT_TIME_ZONE: &str = "Europe/London";

fn db() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The zone named `name` (an IANA name such as `Europe/London`), or why there is none.
pub fn by_name(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a time zone name is required, e.g. Europe/London".to_owned());
    }
    db().get(name)
        .map_err(|_| format!("'{name}' is not an IANA time zone name such as Europe/London"))
}

/// [`DEFAULT_TIME_ZONE`].
pub fn default_zone() -> TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| by_name(DEFAULT_TIME_ZONE).unwrap_or(TimeZone::UTC))
        .clone()
}

/// Unix seconds of a local civil time in `zone`, gaps and overlaps resolved as the module says.
/// `None` when the fields are not a valid date and time.
pub fn local_to_unix(
    zone: &TimeZone,
    (year, month, day): (i32, u32, u32),
    (hour, minute, second): (u32, u32, u32),
) -> Option<i64> {
    let dt = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let ts = zone.to_ambiguous_timestamp(dt).compatible().ok()?;
    Some(ts.as_second())
}

/// The offset from UTC, in seconds, in force in `zone` at Unix second `unix`.
pub fn offset_at(zone: &TimeZone, unix: i64) -> Option<i32> {
    let ts = jiff::Timestamp::from_second(unix).ok()?;
    Some(zone.to_offset(ts).seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_database_knows_london_and_refuses_nonsense() {
        assert!(by_name("Europe/London").is_ok());
        assert!(by_name("europe/london").is_ok());
        assert!(by_name("Europe/Londres").is_err());
        assert!(by_name("").is_err());
        assert_eq!(default_zone().iana_name(), Some("Europe/London"));
    }

    #[test]
    fn item9_gap_moves_forward_and_overlap_takes_the_earlier() -> Result<(), String> {
        let london = by_name("Europe/London")?;
        let at = |d, t| local_to_unix(&london, d, t).ok_or("no time");
        // 2026-03-29 01:30 does not exist in London: it is 01:30 UTC (02:30 BST).
        assert_eq!(at((2026, 3, 29), (1, 30, 0))?, 1_774_747_800);
        // 2026-10-25 01:30 happens twice: the earlier is BST, 00:30 UTC.
        assert_eq!(at((2026, 10, 25), (1, 30, 0))?, 1_792_888_200);
        assert_eq!(offset_at(&london, 1_792_888_200), Some(3600));
        assert_eq!(at((2026, 2, 30), (1, 0, 0)).ok(), None);
        Ok(())
    }
}
