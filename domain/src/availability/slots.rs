//! Slot generation: the 30-minute slots a doctor offers in a requested range of time.
//!
//! Slots are laid out in the doctor's local time, every 30 minutes from each window's
//! start, and only then converted to UTC. On a daylight-saving switch day this gives:
//!
//! - A local start that does not exist (inside the spring-forward gap) has no slot.
//! - A local start that occurs twice (inside the fall-back overlap) gets one slot, at its
//!   first occurrence under the earlier offset. The repeated hour is not offered again.
//! - A slot lasts 30 minutes of real time and must end no later than the first instant at
//!   which the wall clock reads the window's end time. If the end time falls in a gap,
//!   that is the end of the gap.
//!
//! So a 01:00–03:00 window on the night New York springs forward (2023-03-12) offers
//! 01:00 and 01:30 EST only: 02:00 and 02:30 do not exist, and at 03:00 EDT the window
//! has ended after one real hour. A 00:30–02:30 window on the night it falls back
//! (2023-11-05) offers 00:30, 01:00 and 01:30 EDT and then 02:00 EST.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use super::rules::{check_timing, describe_duration};
use super::window::AvailabilityWindow;
use super::{BookingPolicy, DoctorSchedule, DoctorTimeZone, TimeRange};
use crate::FieldError;

/// Length of every slot, in minutes.
pub const SLOT_MINUTES: u32 = 30;

/// Returns the length of every slot.
pub fn slot_length() -> TimeDelta {
    TimeDelta::minutes(i64::from(SLOT_MINUTES))
}

/// One bookable slot. Serializes both instants as RFC 3339 in UTC, such as `2023-03-10T14:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Slot {
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub start: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub end: DateTime<Utc>,
}

/// The slots offered in a requested range, sorted by start, with the doctor's zone so a
/// client can show them in the doctor's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotList {
    pub time_zone: DoctorTimeZone,
    pub slots: Vec<Slot>,
}

impl DoctorSchedule {
    /// Lists the slots starting in `[from, to)` that `is_bookable` accepts at `now`.
    ///
    /// # Errors
    ///
    /// A `FieldError` on `to` when `to` is not after `from`, or when the range is longer
    /// than the policy's booking horizon.
    pub fn list_slots(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        booked: &[TimeRange],
        now: DateTime<Utc>,
        policy: &BookingPolicy,
    ) -> Result<SlotList, FieldError> {
        validate_range(from, to, policy)?;

        let mut starts: Vec<DateTime<Utc>> = self
            .candidate_dates(from.max(now), to.min(now + policy.horizon()))
            .flat_map(|date| self.slot_starts_on(date))
            .filter(|start| (from..to).contains(start))
            .filter(|start| check_timing(*start, now, policy).is_ok())
            .filter(|start| self.check_conflicts(*start, booked).is_ok())
            .collect();
        // Windows never overlap, so no start should appear twice. Sorting puts the windows
        // of consecutive days in order, and dedup guards the no-duplicates promise cheaply.
        starts.sort_unstable();
        starts.dedup();

        let slots = starts
            .into_iter()
            .map(|start| Slot {
                start,
                end: start + slot_length(),
            })
            .collect();
        Ok(SlotList {
            time_zone: self.time_zone,
            slots,
        })
    }

    /// Returns the start of every slot in the windows that open on local `date`, before
    /// time off, bookings and the booking policy are applied.
    pub(super) fn slot_starts_on(&self, date: NaiveDate) -> Vec<DateTime<Utc>> {
        self.weekly
            .windows_on(date.weekday())
            .iter()
            .flat_map(|window| self.window_slot_starts(date, window))
            .collect()
    }

    /// Returns the slot starts of `window` opening on local `date`, following the
    /// daylight-saving rules in the module documentation.
    pub(super) fn window_slot_starts(
        &self,
        date: NaiveDate,
        window: &AvailabilityWindow,
    ) -> Vec<DateTime<Utc>> {
        let zone = self.time_zone;
        let (local_start, local_end) = window.local_bounds(date);
        let end_instant = zone.first_instant_at_or_after(local_end);

        let mut starts = Vec::new();
        let mut local = local_start;
        while local < local_end {
            if let Some(start) = zone.slot_start_instant(local) {
                if start + slot_length() <= end_instant {
                    starts.push(start);
                }
            }
            local += slot_length();
        }
        starts
    }

    /// Returns the windows whose local span contains `local`, with the date each opens on.
    /// Only the window's own date and the day before can qualify, since windows last at
    /// most 24 hours.
    pub(super) fn windows_containing(
        &self,
        local: NaiveDateTime,
    ) -> Vec<(NaiveDate, AvailabilityWindow)> {
        let date = local.date();
        [date - Days::new(1), date]
            .into_iter()
            .flat_map(|opening| {
                self.weekly
                    .windows_on(opening.weekday())
                    .iter()
                    .filter(move |window| {
                        let (start, end) = window.local_bounds(opening);
                        start <= local && local < end
                    })
                    .map(move |window| (opening, *window))
            })
            .collect()
    }

    /// Returns every local date whose windows can contain a slot starting in `[earliest, latest]`.
    ///
    /// A window opens at most a day before its slots start. Between two instants the wall
    /// clock can also run back by less than two days, because chrono keeps offsets under
    /// 24 hours either way (Pacific/Apia repeated 1892-07-04, for example). So the dates
    /// are widened by three days on each side.
    fn candidate_dates(
        &self,
        earliest: DateTime<Utc>,
        latest: DateTime<Utc>,
    ) -> impl Iterator<Item = NaiveDate> {
        let first = self.time_zone.local(earliest).date() - Days::new(3);
        let last = self.time_zone.local(latest).date() + Days::new(3);
        let empty = earliest > latest;
        first
            .iter_days()
            .take_while(move |date| !empty && *date <= last)
    }
}

/// Checks a requested range: `to` after `from`, and no longer than the booking horizon,
/// which also bounds the work one request can cause.
fn validate_range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    policy: &BookingPolicy,
) -> Result<(), FieldError> {
    if to <= from {
        return Err(FieldError::new(
            "to",
            format!(
                "{} is not after from {}; request a range whose end is later than its start",
                to.to_rfc3339_opts(SecondsFormat::Secs, true),
                from.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    if to - from > policy.horizon() {
        return Err(FieldError::new(
            "to",
            format!(
                "the range from {} to {} is longer than the booking horizon of {}; \
                 request at most {} at a time",
                from.to_rfc3339_opts(SecondsFormat::Secs, true),
                to.to_rfc3339_opts(SecondsFormat::Secs, true),
                describe_duration(policy.horizon()),
                describe_duration(policy.horizon()),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{every_day, schedule, utc};
    use super::*;

    /// Lists one UTC day's slots, seen from a day earlier under the default policy.
    fn slots_on_utc_day(schedule: &DoctorSchedule, date: &str) -> Vec<DateTime<Utc>> {
        let from = utc(&format!("{date}T00:00:00Z"));
        slot_starts(schedule, from, from + TimeDelta::days(1))
    }

    fn slot_starts(
        schedule: &DoctorSchedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let now = from - TimeDelta::days(1);
        schedule
            .list_slots(from, to, &[], now, &BookingPolicy::default())
            .unwrap()
            .slots
            .iter()
            .map(|slot| slot.start)
            .collect()
    }

    fn utc_list(raw: &[&str]) -> Vec<DateTime<Utc>> {
        raw.iter().map(|instant| utc(instant)).collect()
    }

    #[test]
    fn new_york_before_spring_forward() {
        let doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-03-10");
        assert_eq!(starts[0], utc("2023-03-10T14:00:00Z"));
        assert_eq!(starts.len(), 16);
        assert_eq!(starts[15], utc("2023-03-10T21:30:00Z"));
    }

    #[test]
    fn new_york_spring_forward_day() {
        let doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-03-12");
        assert_eq!(starts[0], utc("2023-03-12T13:00:00Z"));
        assert_eq!(starts.len(), 16);
    }

    #[test]
    fn new_york_after_spring_forward() {
        let doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-03-13");
        assert_eq!(starts[0], utc("2023-03-13T13:00:00Z"));
        assert_eq!(starts.len(), 16);
        assert_eq!(starts[15], utc("2023-03-13T20:30:00Z"));
    }

    #[test]
    fn new_york_fall_back_day() {
        let doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-11-05");
        assert_eq!(starts[0], utc("2023-11-05T14:00:00Z"));
        assert_eq!(starts.len(), 16);
    }

    #[test]
    fn new_york_after_fall_back() {
        let doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-11-06");
        assert_eq!(starts[0], utc("2023-11-06T14:00:00Z"));
        assert_eq!(starts.len(), 16);
        assert_eq!(starts[15], utc("2023-11-06T21:30:00Z"));
    }

    #[test]
    fn berlin_across_march_switch() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        // Friday before, the switch Sunday itself, and the Monday after.
        for (date, first, last) in [
            ("2023-03-24", "2023-03-24T08:00:00Z", "2023-03-24T15:30:00Z"),
            ("2023-03-26", "2023-03-26T07:00:00Z", "2023-03-26T14:30:00Z"),
            ("2023-03-27", "2023-03-27T07:00:00Z", "2023-03-27T14:30:00Z"),
        ] {
            let starts = slots_on_utc_day(&doctor, date);
            assert_eq!(starts.len(), 16, "{date}");
            assert_eq!(starts[0], utc(first), "{date}");
            assert_eq!(starts[15], utc(last), "{date}");
        }
    }

    #[test]
    fn berlin_across_october_switch() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        for (date, first, last) in [
            ("2023-10-27", "2023-10-27T07:00:00Z", "2023-10-27T14:30:00Z"),
            ("2023-10-29", "2023-10-29T08:00:00Z", "2023-10-29T15:30:00Z"),
            ("2023-10-30", "2023-10-30T08:00:00Z", "2023-10-30T15:30:00Z"),
        ] {
            let starts = slots_on_utc_day(&doctor, date);
            assert_eq!(starts.len(), 16, "{date}");
            assert_eq!(starts[0], utc(first), "{date}");
            assert_eq!(starts[15], utc(last), "{date}");
        }
    }

    #[test]
    fn berlin_time_off_removes_two_slots() {
        let mut doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        let without_time_off = slots_on_utc_day(&doctor, "2016-11-29");
        doctor.time_off = vec![TimeRange::parse(
            "time_off",
            "2016-11-29T09:00:00+01:00",
            "2016-11-29T10:00:00+01:00",
        )
        .unwrap()];

        let with_time_off = slots_on_utc_day(&doctor, "2016-11-29");

        let removed: Vec<_> = without_time_off
            .into_iter()
            .filter(|start| !with_time_off.contains(start))
            .collect();
        assert_eq!(
            removed,
            utc_list(&["2016-11-29T08:00:00Z", "2016-11-29T08:30:00Z"])
        );
        assert_eq!(with_time_off.len(), 14);
    }

    #[test]
    fn kolkata_aligns_to_local_half_hours() {
        let doctor = schedule("Asia/Kolkata", &every_day("09:00", "17:00"));
        let starts = slots_on_utc_day(&doctor, "2023-06-06");
        assert_eq!(starts.len(), 16);
        assert_eq!(starts[0], utc("2023-06-06T03:30:00Z"));
        assert_eq!(starts[1], utc("2023-06-06T04:00:00Z"));
        assert_eq!(starts[15], utc("2023-06-06T11:00:00Z"));
    }

    #[test]
    fn window_spanning_midnight_gives_seven_slots() {
        let doctor = schedule("Europe/Berlin", &[("monday", "22:30", "02:00")]);
        let from = utc("2023-05-01T12:00:00Z");
        let starts = slot_starts(&doctor, from, from + TimeDelta::days(1));
        assert_eq!(
            starts,
            utc_list(&[
                "2023-05-01T20:30:00Z",
                "2023-05-01T21:00:00Z",
                "2023-05-01T21:30:00Z",
                "2023-05-01T22:00:00Z",
                "2023-05-01T22:30:00Z",
                "2023-05-01T23:00:00Z",
                // 01:30 on Tuesday in Berlin (UTC+2).
                "2023-05-01T23:30:00Z",
            ])
        );
    }

    #[test]
    fn spring_forward_night_skips_missing_times() {
        let doctor = schedule("America/New_York", &[("sunday", "01:00", "04:00")]);
        let starts = slots_on_utc_day(&doctor, "2023-03-12");
        // 01:00 and 01:30 EST, then 03:00 and 03:30 EDT. 02:00 and 02:30 do not exist.
        assert_eq!(
            starts,
            utc_list(&[
                "2023-03-12T06:00:00Z",
                "2023-03-12T06:30:00Z",
                "2023-03-12T07:00:00Z",
                "2023-03-12T07:30:00Z",
            ])
        );
    }

    #[test]
    fn spring_forward_window_ending_after_gap() {
        let doctor = schedule("America/New_York", &[("sunday", "01:00", "03:00")]);
        let starts = slots_on_utc_day(&doctor, "2023-03-12");
        // The wall clock jumps from 02:00 EST to 03:00 EDT, which ends the window.
        assert_eq!(
            starts,
            utc_list(&["2023-03-12T06:00:00Z", "2023-03-12T06:30:00Z"])
        );
    }

    #[test]
    fn spring_forward_window_ending_in_gap() {
        let doctor = schedule("America/New_York", &[("sunday", "01:15", "02:15")]);
        let starts = slots_on_utc_day(&doctor, "2023-03-12");
        // A 01:45 EST slot would run until 03:15 EDT, past the end of the gap, which is
        // where the nonexistent 02:15 end time is placed.
        assert_eq!(starts, utc_list(&["2023-03-12T06:15:00Z"]));
    }

    #[test]
    fn fall_back_night_has_no_duplicates() {
        let doctor = schedule("America/New_York", &[("sunday", "00:30", "02:30")]);
        let starts = slots_on_utc_day(&doctor, "2023-11-05");
        // 00:30, 01:00 and 01:30 EDT, then 02:00 EST. The repeated 01:00 and 01:30 EST
        // (06:00Z and 06:30Z) are not offered.
        assert_eq!(
            starts,
            utc_list(&[
                "2023-11-05T04:30:00Z",
                "2023-11-05T05:00:00Z",
                "2023-11-05T05:30:00Z",
                "2023-11-05T07:00:00Z",
            ])
        );
    }

    #[test]
    fn whole_day_window_on_fall_back_day() {
        let doctor = schedule("America/New_York", &[("sunday", "00:00", "24:00")]);
        let from = utc("2023-11-05T04:00:00Z");
        let starts = slot_starts(&doctor, from, from + TimeDelta::days(2));
        // 48 local half hours, each once, although the day lasts 25 real hours.
        assert_eq!(starts.len(), 48);
        assert_eq!(starts[0], utc("2023-11-05T04:00:00Z"));
        assert_eq!(starts[47], utc("2023-11-06T04:30:00Z"));
    }

    #[test]
    fn slots_inside_skipped_day_do_not_exist() {
        let doctor = schedule("Pacific/Apia", &every_day("09:00", "17:00"));
        // Samoa moved from UTC-10 to UTC+14 and skipped Friday 2011-12-30 entirely.
        // The range contains Thursday the 29th's window (from 19:00Z, at UTC-10) and
        // Saturday the 31st's window (from 19:00Z on the 30th, at UTC+14).
        let from = utc("2011-12-29T12:00:00Z");
        let starts = slot_starts(&doctor, from, from + TimeDelta::days(2));
        let local_dates: Vec<NaiveDate> = starts
            .iter()
            .map(|start| doctor.time_zone.local(*start).date())
            .collect();
        assert!(!local_dates.contains(&NaiveDate::from_ymd_opt(2011, 12, 30).unwrap()));
        assert_eq!(starts.len(), 32);
    }

    #[test]
    fn range_must_end_after_start() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        let from = utc("2023-05-02T00:00:00Z");
        let error = doctor
            .list_slots(from, from, &[], from, &BookingPolicy::default())
            .unwrap_err();
        assert_eq!(error.field, "to");
        assert!(
            error.detail.contains("is not after from"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn range_longer_than_horizon_is_rejected() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        let from = utc("2023-05-02T00:00:00Z");
        let to = from + TimeDelta::days(61);
        let error = doctor
            .list_slots(from, to, &[], from, &BookingPolicy::default())
            .unwrap_err();
        assert_eq!(error.field, "to");
        assert!(
            error.detail.contains("horizon of 60 days"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn range_equal_to_horizon_is_accepted() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "17:00"));
        let now = utc("2023-05-02T00:00:00Z");
        let list = doctor
            .list_slots(
                now,
                now + TimeDelta::days(60),
                &[],
                now,
                &BookingPolicy::default(),
            )
            .unwrap();
        // 60 days of 16 slots. The horizon ends at midnight, before the 61st day's window opens.
        assert_eq!(list.slots.len(), 60 * 16);
    }

    #[test]
    fn slot_list_serializes_rfc3339_with_zone() {
        let doctor = schedule("America/New_York", &[("friday", "09:00", "10:00")]);
        let from = utc("2023-03-10T00:00:00Z");
        let list = doctor
            .list_slots(
                from,
                from + TimeDelta::days(1),
                &[],
                from,
                &BookingPolicy::default(),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            concat!(
                r#"{"time_zone":"America/New_York","slots":["#,
                r#"{"start":"2023-03-10T14:00:00Z","end":"2023-03-10T14:30:00Z"},"#,
                r#"{"start":"2023-03-10T14:30:00Z","end":"2023-03-10T15:00:00Z"}]}"#
            )
        );
    }
}
