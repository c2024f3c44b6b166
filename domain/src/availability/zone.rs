//! The doctor's IANA time zone and the rules that turn local wall-clock times into instants.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::values::truncate;
use crate::FieldError;

/// Maximum length, in minutes, of a gap in local time. chrono keeps every UTC offset
/// under 24 hours either way, so one offset change moves the clock by less than two days.
const MAX_GAP_MINUTES: i64 = 2 * 24 * 60;

/// A time zone from the IANA database, such as `Europe/Berlin`, in which a doctor's
/// weekly availability is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DoctorTimeZone(Tz);

impl DoctorTimeZone {
    /// Parses an IANA zone name. Names are case-sensitive, as in the database.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Tz::from_str(raw).map(Self).map_err(|_| {
            FieldError::new(
                field,
                format!(
                    "'{}' is not an IANA time zone name; use a name such as Europe/Berlin or America/New_York",
                    truncate(raw, 40)
                ),
            )
        })
    }

    pub fn tz(self) -> Tz {
        self.0
    }

    /// Returns the IANA name, for example `America/New_York`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Returns the wall-clock reading of `instant` in this zone.
    pub(super) fn local(self, instant: DateTime<Utc>) -> NaiveDateTime {
        instant.with_timezone(&self.0).naive_local()
    }

    /// Returns the instant a slot starting at `local` begins. A local time inside a gap
    /// (spring forward) does not exist and yields `None`. A local time that occurs twice
    /// (fall back) resolves to its first occurrence, under the earlier, pre-switch offset.
    pub(super) fn slot_start_instant(self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        self.0
            .from_local_datetime(&local)
            .earliest()
            .map(|instant| instant.with_timezone(&Utc))
    }

    /// Returns the first instant at which the wall clock reads `local` or later. This
    /// is the instant itself when `local` exists, its first occurrence when it occurs
    /// twice, and the end of the gap when the clock jumps over it.
    pub(super) fn first_instant_at_or_after(self, local: NaiveDateTime) -> DateTime<Utc> {
        if let Some(instant) = self.slot_start_instant(local) {
            return instant;
        }

        // The first whole local minute after the gap is taken as the moment the clock jumps
        // to. That is exact when the offset changes by whole minutes, as in all current
        // rules. A few historic changes were not whole minutes (Africa/Monrovia in 1972),
        // and there the result is up to a minute late.
        for minutes in 1..=MAX_GAP_MINUTES {
            if let Some(instant) = self.slot_start_instant(local + TimeDelta::minutes(minutes)) {
                return instant;
            }
        }

        // Unreachable because of the bound on gaps. Reading the time as UTC keeps the
        // function total without a panic.
        local.and_utc()
    }
}

impl fmt::Display for DoctorTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for DoctorTimeZone {
    type Error = FieldError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse("time_zone", &raw)
    }
}

impl From<DoctorTimeZone> for String {
    fn from(zone: DoctorTimeZone) -> Self {
        zone.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn local(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(year, month, day)
            .unwrap()
            .and_hms_opt(hour, minute, 0)
            .unwrap()
    }

    fn utc(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    #[test]
    fn zone_parses_iana_name() {
        let zone = DoctorTimeZone::parse("time_zone", "Asia/Kolkata").unwrap();
        assert_eq!(zone.name(), "Asia/Kolkata");
    }

    #[test]
    fn zone_rejects_unknown_name() {
        let error = DoctorTimeZone::parse("time_zone", "Mars/Olympus_Mons").unwrap_err();
        assert_eq!(error.field, "time_zone");
        assert!(
            error.detail.contains("'Mars/Olympus_Mons'"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn zone_rejects_wrong_case() {
        let error = DoctorTimeZone::parse("time_zone", "europe/berlin").unwrap_err();
        assert_eq!(error.field, "time_zone");
    }

    #[test]
    fn zone_serializes_as_name() {
        let zone = DoctorTimeZone::parse("time_zone", "Europe/Berlin").unwrap();
        assert_eq!(serde_json::to_string(&zone).unwrap(), "\"Europe/Berlin\"");
    }

    #[test]
    fn zone_deserialization_validates() {
        let result = serde_json::from_str::<DoctorTimeZone>("\"Nowhere/City\"");
        assert!(result.is_err());
    }

    #[test]
    fn slot_start_skips_gap() {
        let zone = DoctorTimeZone::parse("time_zone", "America/New_York").unwrap();
        assert_eq!(zone.slot_start_instant(local(2023, 3, 12, 2, 30)), None);
    }

    #[test]
    fn slot_start_takes_first_occurrence() {
        let zone = DoctorTimeZone::parse("time_zone", "America/New_York").unwrap();
        let instant = zone.slot_start_instant(local(2023, 11, 5, 1, 30));
        assert_eq!(instant, Some(utc("2023-11-05T05:30:00Z")));
    }

    #[test]
    fn instant_after_gap_is_gap_end() {
        let zone = DoctorTimeZone::parse("time_zone", "America/New_York").unwrap();
        let instant = zone.first_instant_at_or_after(local(2023, 3, 12, 2, 15));
        assert_eq!(instant, utc("2023-03-12T07:00:00Z"));
    }

    #[test]
    fn instant_after_skipped_day() {
        let zone = DoctorTimeZone::parse("time_zone", "Pacific/Apia").unwrap();
        let instant = zone.first_instant_at_or_after(local(2011, 12, 30, 12, 0));
        assert_eq!(instant, utc("2011-12-30T10:00:00Z"));
    }
}
