//! Absolute half-open time ranges, used for time off and for booked appointments.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::values::truncate;
use crate::FieldError;

/// An absolute range of time `[start, end)` with `end` after `start`.
///
/// Time off and bookings are stored this way, so they keep their instants when the
/// doctor's time zone or a daylight-saving rule changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "UncheckedTimeRange")]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Deserialize)]
struct UncheckedTimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    /// Builds a range, rejecting an `end` that is not after `start`. The error names
    /// `{field}.end`.
    pub fn new(field: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, FieldError> {
        if end <= start {
            return Err(FieldError::new(
                format!("{field}.end"),
                format!(
                    "{} is not after the start {}; the end must be later than the start",
                    rfc3339(end),
                    rfc3339(start)
                ),
            ));
        }
        Ok(Self { start, end })
    }

    /// Parses start and end from RFC 3339 timestamps with an offset, for example
    /// `2023-03-10T14:00:00Z`. Errors name `{field}.start` or `{field}.end`.
    pub fn parse(field: &str, raw_start: &str, raw_end: &str) -> Result<Self, FieldError> {
        let start = parse_instant(&format!("{field}.start"), raw_start)?;
        let end = parse_instant(&format!("{field}.end"), raw_end)?;
        Self::new(field, start, end)
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Returns whether the two ranges share at least one instant. Ranges that only
    /// touch, where one ends exactly when the other starts, do not overlap.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl TryFrom<UncheckedTimeRange> for TimeRange {
    type Error = FieldError;

    fn try_from(raw: UncheckedTimeRange) -> Result<Self, Self::Error> {
        Self::new("time_range", raw.start, raw.end)
    }
}

/// Returns the booked ranges that `time_off` overlaps, in their input order.
///
/// Adding time off never cancels an appointment: the caller reports these bookings so
/// that the doctor or an admin can act on them.
pub fn bookings_overlapping(time_off: &TimeRange, booked: &[TimeRange]) -> Vec<TimeRange> {
    booked
        .iter()
        .filter(|booking| booking.overlaps(time_off))
        .copied()
        .collect()
}

fn parse_instant(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|_| {
            FieldError::new(
                field,
                format!(
                    "'{}' is not an RFC 3339 date-time; use a form such as 2023-03-10T14:00:00Z",
                    truncate(raw, 40)
                ),
            )
        })
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str) -> TimeRange {
        TimeRange::parse("range", start, end).unwrap()
    }

    #[test]
    fn range_parses_offsets_to_utc() {
        let parsed = range("2016-11-29T09:00:00+01:00", "2016-11-29T10:00:00+01:00");
        assert_eq!(
            parsed.start(),
            "2016-11-29T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parsed.end(),
            "2016-11-29T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn range_rejects_end_before_start() {
        let error = TimeRange::parse("time_off", "2023-05-02T10:00:00Z", "2023-05-02T09:00:00Z")
            .unwrap_err();
        assert_eq!(error.field, "time_off.end");
        assert!(
            error.detail.contains("2023-05-02T09:00:00Z"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn range_rejects_empty() {
        let error = TimeRange::parse("time_off", "2023-05-02T10:00:00Z", "2023-05-02T10:00:00Z")
            .unwrap_err();
        assert_eq!(error.field, "time_off.end");
    }

    #[test]
    fn range_rejects_malformed_timestamp() {
        let error =
            TimeRange::parse("time_off", "2023-05-02 10:00", "2023-05-02T11:00:00Z").unwrap_err();
        assert_eq!(error.field, "time_off.start");
        assert!(error.detail.contains("RFC 3339"), "{}", error.detail);
    }

    #[test]
    fn touching_ranges_do_not_overlap() {
        let morning = range("2023-05-02T09:00:00Z", "2023-05-02T10:00:00Z");
        let next = range("2023-05-02T10:00:00Z", "2023-05-02T10:30:00Z");
        assert!(!morning.overlaps(&next));
        assert!(!next.overlaps(&morning));
    }

    #[test]
    fn nested_ranges_overlap() {
        let outer = range("2023-05-02T09:00:00Z", "2023-05-02T12:00:00Z");
        let inner = range("2023-05-02T10:00:00Z", "2023-05-02T10:30:00Z");
        assert!(outer.overlaps(&inner));
        assert!(inner.overlaps(&outer));
    }

    #[test]
    fn time_off_reports_overlapping_bookings() {
        let time_off = range("2023-05-02T09:00:00Z", "2023-05-02T11:00:00Z");
        let before = range("2023-05-02T08:30:00Z", "2023-05-02T09:00:00Z");
        let straddling = range("2023-05-02T08:45:00Z", "2023-05-02T09:15:00Z");
        let inside = range("2023-05-02T10:00:00Z", "2023-05-02T10:30:00Z");
        let after = range("2023-05-02T11:00:00Z", "2023-05-02T11:30:00Z");

        let affected = bookings_overlapping(&time_off, &[before, straddling, inside, after]);

        assert_eq!(affected, vec![straddling, inside]);
    }

    #[test]
    fn range_deserialization_validates() {
        let json = r#"{"start":"2023-05-02T10:00:00Z","end":"2023-05-02T09:00:00Z"}"#;
        assert!(serde_json::from_str::<TimeRange>(json).is_err());
    }

    #[test]
    fn range_serializes_rfc3339() {
        let parsed = range("2023-05-02T09:00:00Z", "2023-05-02T09:30:00Z");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"{"start":"2023-05-02T09:00:00Z","end":"2023-05-02T09:30:00Z"}"#
        );
    }
}
