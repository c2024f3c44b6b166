//! A daily availability window in local wall-clock time, parsed from `HH:MM` start and end.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

use super::slots::SLOT_MINUTES;
use crate::values::truncate;
use crate::FieldError;

pub(super) const MINUTES_PER_DAY: u32 = 24 * 60;

/// A stretch of local time that starts on one weekday and lasts from 30 minutes up to 24 hours.
///
/// An end earlier than the start means the window runs past midnight into the next day:
/// 22:30–02:00 is 22:30 on its weekday to 02:00 the day after. `24:00` is accepted as an
/// end and means midnight at the end of the start day, so 00:00–24:00 is a whole day.
/// An end equal to the start is rejected, because it could mean either nothing or a whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailabilityWindow {
    start_minute: u32,
    length_minutes: u32,
}

impl AvailabilityWindow {
    /// Parses a window from its start and end in `HH:MM` on the 24-hour clock. Errors
    /// name `{field}.start` or `{field}.end`.
    pub fn parse(field: &str, raw_start: &str, raw_end: &str) -> Result<Self, FieldError> {
        let start_field = format!("{field}.start");
        let end_field = format!("{field}.end");
        let start_minute = parse_clock_minutes(&start_field, raw_start, false)?;
        let end_minute = parse_clock_minutes(&end_field, raw_end, true)?;

        if end_minute == start_minute {
            return Err(FieldError::new(
                end_field,
                format!(
                    "'{raw_end}' equals the start time; use an end after the start, \
                     or 00:00 to 24:00 for a whole day"
                ),
            ));
        }

        let length_minutes = if end_minute > start_minute {
            end_minute - start_minute
        } else {
            MINUTES_PER_DAY - start_minute + end_minute
        };
        if length_minutes < SLOT_MINUTES {
            return Err(FieldError::new(
                end_field,
                format!(
                    "window {raw_start}–{raw_end} is {length_minutes} minutes long, \
                     shorter than one {SLOT_MINUTES}-minute slot"
                ),
            ));
        }

        Ok(Self {
            start_minute,
            length_minutes,
        })
    }

    /// Local start time of day.
    pub fn start(&self) -> NaiveTime {
        minutes_to_time(self.start_minute)
    }

    /// Wall-clock length, which can differ from the real duration on a daylight-saving switch day.
    pub fn length(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.length_minutes))
    }

    pub fn spans_midnight(&self) -> bool {
        self.start_minute + self.length_minutes > MINUTES_PER_DAY
    }

    /// Returns the local start and end of this window when it opens on `date`.
    pub(super) fn local_bounds(&self, date: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let start = date.and_time(self.start());
        (start, start + self.length())
    }

    /// Offset of the window start from the start of the week (Monday 00:00), in minutes,
    /// when the window opens on the weekday `days_from_monday`.
    pub(super) fn week_start_minute(&self, days_from_monday: u32) -> u32 {
        days_from_monday * MINUTES_PER_DAY + self.start_minute
    }

    pub(super) fn length_minutes(&self) -> u32 {
        self.length_minutes
    }

    /// Returns the end as written in input, with `24:00` for midnight at the end of the day.
    pub(super) fn end_text(&self) -> String {
        let end_minute = (self.start_minute + self.length_minutes) % MINUTES_PER_DAY;
        if end_minute == 0 {
            "24:00".to_owned()
        } else {
            format_clock_minutes(end_minute)
        }
    }

    pub(super) fn start_text(&self) -> String {
        format_clock_minutes(self.start_minute)
    }
}

impl fmt::Display for AvailabilityWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}–{}", self.start_text(), self.end_text())
    }
}

/// Parses `HH:MM` into minutes after midnight. `24:00` is accepted only when `allow_end_of_day`.
fn parse_clock_minutes(field: &str, raw: &str, allow_end_of_day: bool) -> Result<u32, FieldError> {
    let invalid = || {
        FieldError::new(
            field,
            format!(
                "'{}' is not a time of day; use HH:MM on the 24-hour clock, for example 09:00 or 17:30",
                truncate(raw, 20)
            ),
        )
    };

    let bytes = raw.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return Err(invalid());
    }
    let hours = u32::from(bytes[0] - b'0') * 10 + u32::from(bytes[1] - b'0');
    let minutes = u32::from(bytes[3] - b'0') * 10 + u32::from(bytes[4] - b'0');

    if hours == 24 && minutes == 0 {
        if allow_end_of_day {
            return Ok(MINUTES_PER_DAY);
        }
        return Err(FieldError::new(
            field,
            "'24:00' is valid only as an end time; use 00:00 for a start at midnight",
        ));
    }
    if hours > 23 || minutes > 59 {
        return Err(invalid());
    }
    Ok(hours * 60 + minutes)
}

fn format_clock_minutes(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn minutes_to_time(minutes: u32) -> NaiveTime {
    NaiveTime::from_num_seconds_from_midnight_opt(minutes * 60, 0)
        .expect("a start minute is always below 24 * 60")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: &str, end: &str) -> Result<AvailabilityWindow, FieldError> {
        AvailabilityWindow::parse("window", start, end)
    }

    #[test]
    fn window_parses_daytime_hours() {
        let parsed = window("09:00", "17:00").unwrap();
        assert_eq!(parsed.start(), NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(parsed.length(), TimeDelta::hours(8));
        assert!(!parsed.spans_midnight());
    }

    #[test]
    fn window_spanning_midnight() {
        let parsed = window("22:30", "02:00").unwrap();
        assert_eq!(parsed.length(), TimeDelta::minutes(210));
        assert!(parsed.spans_midnight());
    }

    #[test]
    fn window_ending_at_24_00() {
        let parsed = window("22:00", "24:00").unwrap();
        assert_eq!(parsed.length(), TimeDelta::hours(2));
        assert!(!parsed.spans_midnight());
    }

    #[test]
    fn window_whole_day() {
        let parsed = window("00:00", "24:00").unwrap();
        assert_eq!(parsed.length(), TimeDelta::hours(24));
    }

    #[test]
    fn window_display_round_trips() {
        for (start, end) in [("09:00", "17:00"), ("22:30", "02:00"), ("00:00", "24:00")] {
            let parsed = window(start, end).unwrap();
            assert_eq!(parsed.to_string(), format!("{start}–{end}"));
        }
    }

    #[test]
    fn window_end_at_midnight_written_as_24_00() {
        let parsed = window("22:00", "00:00").unwrap();
        assert_eq!(parsed.to_string(), "22:00–24:00");
    }

    #[test]
    fn clock_time_rejects_bad_shapes() {
        for raw in [
            "25:00", "9:5", "24:01", "9:05", "09:60", "0900", "09:00:00", "", "ab:cd", "+9:00",
        ] {
            let error = window(raw, "23:00").unwrap_err();
            assert_eq!(error.field, "window.start", "input {raw:?}");
            assert!(
                error.detail.contains("HH:MM"),
                "input {raw:?}: {}",
                error.detail
            );
        }
    }

    #[test]
    fn clock_time_rejects_bad_end() {
        let error = window("09:00", "25:00").unwrap_err();
        assert_eq!(error.field, "window.end");
    }

    #[test]
    fn start_at_24_00_is_rejected() {
        let error = window("24:00", "02:00").unwrap_err();
        assert_eq!(error.field, "window.start");
        assert!(error.detail.contains("only as an end"), "{}", error.detail);
    }

    #[test]
    fn end_equal_to_start_is_rejected() {
        let error = window("09:00", "09:00").unwrap_err();
        assert_eq!(error.field, "window.end");
        assert!(
            error.detail.contains("equals the start"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn window_shorter_than_slot_is_rejected() {
        let error = window("09:00", "09:20").unwrap_err();
        assert_eq!(error.field, "window.end");
        assert!(error.detail.contains("20 minutes"), "{}", error.detail);
    }

    #[test]
    fn short_window_across_midnight_is_rejected() {
        let error = window("23:50", "00:10").unwrap_err();
        assert_eq!(error.field, "window.end");
    }
}
