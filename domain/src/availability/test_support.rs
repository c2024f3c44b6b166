//! Builders shared by the availability tests.

use chrono::{DateTime, Utc};

use super::{DoctorSchedule, DoctorTimeZone, RawWindow, WeeklyAvailability};

pub(super) use super::WEEKDAY_NAMES as WEEKDAYS;

pub(super) fn utc(raw: &str) -> DateTime<Utc> {
    raw.parse()
        .unwrap_or_else(|error| panic!("test timestamp {raw:?}: {error}"))
}

/// Returns the same window on all seven weekdays.
pub(super) fn every_day(
    start: &'static str,
    end: &'static str,
) -> Vec<(&'static str, &'static str, &'static str)> {
    WEEKDAYS
        .iter()
        .map(|weekday| (*weekday, start, end))
        .collect()
}

/// Builds a schedule without time off from `(weekday, start, end)` windows.
pub(super) fn schedule(zone: &str, windows: &[(&str, &str, &str)]) -> DoctorSchedule {
    let raw: Vec<RawWindow> = windows
        .iter()
        .map(|(weekday, start, end)| RawWindow::new(weekday, start, end))
        .collect();
    DoctorSchedule {
        time_zone: DoctorTimeZone::parse("time_zone", zone).unwrap(),
        weekly: WeeklyAvailability::parse("weekly", &raw).unwrap(),
        time_off: Vec::new(),
    }
}
