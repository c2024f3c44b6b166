//! A doctor's weekly availability and the full schedule that slots are computed from.

use chrono::Weekday;
use serde::{Deserialize, Serialize};

use super::slots::SLOT_MINUTES;
use super::window::{AvailabilityWindow, MINUTES_PER_DAY};
use super::{DoctorTimeZone, TimeRange};
use crate::values::truncate;
use crate::FieldError;

const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;

/// Maximum number of windows in a week. Windows are at least one slot long and must
/// not overlap, so no more than this many fit.
pub const MAX_WEEKLY_WINDOWS: usize = (MINUTES_PER_WEEK / SLOT_MINUTES) as usize;

/// One window as a client sends it: an English weekday name and `HH:MM` start and end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawWindow {
    pub weekday: String,
    pub start: String,
    pub end: String,
}

impl RawWindow {
    pub fn new(weekday: &str, start: &str, end: &str) -> Self {
        Self {
            weekday: weekday.to_owned(),
            start: start.to_owned(),
            end: end.to_owned(),
        }
    }
}

/// The windows a doctor is available in each week, in the doctor's local time. No two
/// windows overlap, including a window that runs past midnight into the next day's
/// windows, or past Sunday midnight into Monday's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<RawWindow>", into = "Vec<RawWindow>")]
pub struct WeeklyAvailability {
    /// Windows by the weekday they open on, indexed from Monday, each list sorted by start.
    by_weekday: [Vec<AvailabilityWindow>; 7],
}

impl WeeklyAvailability {
    /// Parses and validates a week of windows. An empty list is valid: the doctor is
    /// never available. Errors name the offending entry as `{field}[{index}]`, with
    /// `.weekday`, `.start` or `.end` appended when one value is at fault.
    pub fn parse(field: &str, raw: &[RawWindow]) -> Result<Self, FieldError> {
        if raw.len() > MAX_WEEKLY_WINDOWS {
            return Err(FieldError::new(
                field,
                format!(
                    "contains {} windows, more than the {MAX_WEEKLY_WINDOWS} non-overlapping \
                     {SLOT_MINUTES}-minute windows that fit in a week",
                    raw.len()
                ),
            ));
        }

        let mut parsed = Vec::with_capacity(raw.len());
        for (index, entry) in raw.iter().enumerate() {
            let entry_field = format!("{field}[{index}]");
            let weekday = parse_weekday(&format!("{entry_field}.weekday"), &entry.weekday)?;
            let window = AvailabilityWindow::parse(&entry_field, &entry.start, &entry.end)?;
            parsed.push((weekday, window));
        }

        reject_overlaps(field, &parsed)?;

        let mut availability = Self::default();
        for (weekday, window) in parsed {
            availability.by_weekday[weekday.num_days_from_monday() as usize].push(window);
        }
        for windows in &mut availability.by_weekday {
            windows.sort_by_key(|window| window.start());
        }
        Ok(availability)
    }

    /// Returns the windows that open on `weekday`, sorted by start time.
    pub fn windows_on(&self, weekday: Weekday) -> &[AvailabilityWindow] {
        &self.by_weekday[weekday.num_days_from_monday() as usize]
    }

    /// Returns the windows in input form, Monday first.
    pub fn to_raw(&self) -> Vec<RawWindow> {
        let mut raw = Vec::new();
        let mut weekday = Weekday::Mon;
        for _ in 0..7 {
            for window in self.windows_on(weekday) {
                raw.push(RawWindow::new(
                    weekday_name(weekday),
                    &window.start_text(),
                    &window.end_text(),
                ));
            }
            weekday = weekday.succ();
        }
        raw
    }
}

impl TryFrom<Vec<RawWindow>> for WeeklyAvailability {
    type Error = FieldError;

    fn try_from(raw: Vec<RawWindow>) -> Result<Self, Self::Error> {
        Self::parse("weekly_availability", &raw)
    }
}

impl From<WeeklyAvailability> for Vec<RawWindow> {
    fn from(availability: WeeklyAvailability) -> Self {
        availability.to_raw()
    }
}

/// Everything that decides which slots a doctor offers, apart from existing bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorSchedule {
    pub time_zone: DoctorTimeZone,
    pub weekly: WeeklyAvailability,
    pub time_off: Vec<TimeRange>,
}

/// Weekday names as the API spells them, Monday first.
pub const WEEKDAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Parses a full lower-case English weekday name. chrono's parser would also accept
/// abbreviations and any case, but one spelling keeps stored schedules uniform.
fn parse_weekday(field: &str, raw: &str) -> Result<Weekday, FieldError> {
    let mut weekday = Weekday::Mon;
    for _ in 0..7 {
        if raw == weekday_name(weekday) {
            return Ok(weekday);
        }
        weekday = weekday.succ();
    }
    Err(FieldError::new(
        field,
        format!(
            "'{}' is not a weekday; expected one of monday, tuesday, wednesday, thursday, \
             friday, saturday, sunday",
            truncate(raw, 20)
        ),
    ))
}

fn weekday_name(weekday: Weekday) -> &'static str {
    WEEKDAY_NAMES[weekday.num_days_from_monday() as usize]
}

/// Rejects the first window that overlaps an earlier one in the list. Windows are
/// compared on a cyclic week, so Sunday 23:00–01:00 overlaps Monday 00:30–02:00.
fn reject_overlaps(
    field: &str,
    windows: &[(Weekday, AvailabilityWindow)],
) -> Result<(), FieldError> {
    for (later_index, (later_day, later)) in windows.iter().enumerate() {
        for (earlier_index, (earlier_day, earlier)) in windows[..later_index].iter().enumerate() {
            if overlap_in_week(*earlier_day, earlier, *later_day, later) {
                return Err(FieldError::new(
                    format!("{field}[{later_index}]"),
                    format!(
                        "{} {later} overlaps {} {earlier} at {field}[{earlier_index}]; \
                         windows must not overlap",
                        weekday_name(*later_day),
                        weekday_name(*earlier_day),
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn overlap_in_week(
    first_day: Weekday,
    first: &AvailabilityWindow,
    second_day: Weekday,
    second: &AvailabilityWindow,
) -> bool {
    let week = i64::from(MINUTES_PER_WEEK);
    let first_start = i64::from(first.week_start_minute(first_day.num_days_from_monday()));
    let first_end = first_start + i64::from(first.length_minutes());
    let second_start = i64::from(second.week_start_minute(second_day.num_days_from_monday()));
    let second_length = i64::from(second.length_minutes());

    // Shifting the second window by a week either way catches overlaps across the
    // Sunday-to-Monday wrap. Windows are at most a day long, so one week is enough.
    [-week, 0, week].iter().any(|shift| {
        let shifted_start = second_start + shift;
        first_start < shifted_start + second_length && shifted_start < first_end
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(raw: &[(&str, &str, &str)]) -> Result<WeeklyAvailability, FieldError> {
        let raw: Vec<RawWindow> = raw
            .iter()
            .map(|(weekday, start, end)| RawWindow::new(weekday, start, end))
            .collect();
        WeeklyAvailability::parse("weekly", &raw)
    }

    #[test]
    fn weekly_groups_windows_by_weekday() {
        let parsed = weekly(&[
            ("monday", "14:00", "17:00"),
            ("monday", "09:00", "12:00"),
            ("friday", "09:00", "12:00"),
        ])
        .unwrap();
        let monday: Vec<String> = parsed
            .windows_on(Weekday::Mon)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(monday, ["09:00–12:00", "14:00–17:00"]);
        assert_eq!(parsed.windows_on(Weekday::Fri).len(), 1);
        assert!(parsed.windows_on(Weekday::Tue).is_empty());
    }

    #[test]
    fn adjacent_windows_are_accepted() {
        assert!(weekly(&[("monday", "09:00", "12:00"), ("monday", "12:00", "17:00")]).is_ok());
    }

    #[test]
    fn overlapping_windows_are_rejected() {
        let error =
            weekly(&[("monday", "09:00", "12:00"), ("monday", "11:30", "17:00")]).unwrap_err();
        assert_eq!(error.field, "weekly[1]");
        assert!(error.detail.contains("weekly[0]"), "{}", error.detail);
    }

    #[test]
    fn midnight_window_overlapping_next_day_is_rejected() {
        let error =
            weekly(&[("tuesday", "01:00", "03:00"), ("monday", "22:30", "02:00")]).unwrap_err();
        assert_eq!(error.field, "weekly[1]");
        assert!(
            error
                .detail
                .contains("monday 22:30–02:00 overlaps tuesday 01:00–03:00"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn sunday_night_overlapping_monday_is_rejected() {
        let error =
            weekly(&[("sunday", "23:00", "01:00"), ("monday", "00:30", "02:00")]).unwrap_err();
        assert_eq!(error.field, "weekly[1]");
    }

    #[test]
    fn midnight_window_touching_next_day_is_accepted() {
        assert!(weekly(&[("monday", "22:30", "02:00"), ("tuesday", "02:00", "04:00")]).is_ok());
    }

    #[test]
    fn unknown_weekday_is_rejected() {
        let error = weekly(&[("Funday", "09:00", "17:00")]).unwrap_err();
        assert_eq!(error.field, "weekly[0].weekday");
        assert!(error.detail.contains("'Funday'"), "{}", error.detail);
    }

    #[test]
    fn bad_clock_time_names_entry() {
        let error =
            weekly(&[("monday", "09:00", "17:00"), ("tuesday", "25:00", "17:00")]).unwrap_err();
        assert_eq!(error.field, "weekly[1].start");
        assert!(error.detail.contains("'25:00'"), "{}", error.detail);
    }

    #[test]
    fn too_many_windows_are_rejected() {
        let raw = vec![RawWindow::new("monday", "09:00", "09:30"); MAX_WEEKLY_WINDOWS + 1];
        let error = WeeklyAvailability::parse("weekly", &raw).unwrap_err();
        assert_eq!(error.field, "weekly");
    }

    #[test]
    fn week_of_half_hour_windows_fits() {
        let mut raw = Vec::new();
        for weekday in WEEKDAY_NAMES {
            for half_hour in 0..48 {
                let start = format!("{:02}:{:02}", half_hour / 2, half_hour % 2 * 30);
                let end_minutes = (half_hour + 1) * 30;
                let end = format!("{:02}:{:02}", end_minutes / 60, end_minutes % 60);
                raw.push(RawWindow::new(weekday, &start, &end));
            }
        }
        assert_eq!(raw.len(), MAX_WEEKLY_WINDOWS);
        assert!(WeeklyAvailability::parse("weekly", &raw).is_ok());
    }

    #[test]
    fn weekly_serializes_as_raw_windows() {
        let parsed =
            weekly(&[("tuesday", "22:30", "02:00"), ("monday", "09:00", "24:00")]).unwrap();
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            json,
            r#"[{"weekday":"monday","start":"09:00","end":"24:00"},{"weekday":"tuesday","start":"22:30","end":"02:00"}]"#
        );
        let back: WeeklyAvailability = serde_json::from_str(&json).unwrap();
        assert_eq!(back, parsed);
    }

    #[test]
    fn weekly_deserialization_validates() {
        let json = r#"[{"weekday":"monday","start":"09:00","end":"09:00"}]"#;
        assert!(serde_json::from_str::<WeeklyAvailability>(json).is_err());
    }
}
