//! The booking check: the one rule that decides whether a slot may be booked.
//!
//! `DoctorSchedule::list_slots` applies the same checks to every slot it generates, so a
//! slot is listed exactly when `DoctorSchedule::is_bookable` accepts its start.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::slots::slot_length;
use super::{DoctorSchedule, TimeRange};
use crate::FieldError;

/// How far ahead patients may book: not sooner than `minimum_notice` from now and not
/// later than `horizon` from now, both measured to the slot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingPolicy {
    minimum_notice: TimeDelta,
    horizon: TimeDelta,
}

impl Default for BookingPolicy {
    /// Returns a policy with a minimum notice of 1 hour and a horizon of 60 days.
    fn default() -> Self {
        Self {
            minimum_notice: TimeDelta::hours(1),
            horizon: TimeDelta::days(60),
        }
    }
}

impl BookingPolicy {
    /// Builds a policy. The notice must not be negative and the horizon must be longer
    /// than the notice, or no slot could ever be booked. Errors name `minimum_notice`
    /// or `horizon`.
    pub fn new(minimum_notice: TimeDelta, horizon: TimeDelta) -> Result<Self, FieldError> {
        if minimum_notice < TimeDelta::zero() {
            return Err(FieldError::new(
                "minimum_notice",
                format!(
                    "{} is negative; use zero or a positive duration",
                    describe_duration(minimum_notice)
                ),
            ));
        }
        if horizon <= minimum_notice {
            return Err(FieldError::new(
                "horizon",
                format!(
                    "{} is not longer than the minimum notice of {}; use a longer horizon",
                    describe_duration(horizon),
                    describe_duration(minimum_notice)
                ),
            ));
        }
        Ok(Self {
            minimum_notice,
            horizon,
        })
    }

    pub fn minimum_notice(&self) -> TimeDelta {
        self.minimum_notice
    }

    pub fn horizon(&self) -> TimeDelta {
        self.horizon
    }
}

/// Reason a slot cannot be booked, checked in the order of the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum SlotRejection {
    #[error("the slot starts in the past")]
    InPast,
    #[error("the slot starts sooner than the minimum booking notice; choose a later slot")]
    InsideMinimumNotice,
    #[error("the slot starts after the booking horizon; choose an earlier slot")]
    BeyondHorizon,
    #[error("the doctor is not available at this time")]
    OutsideAvailability,
    /// Inside a window, but not one of its slot starts: off the 30-minute grid, the
    /// second occurrence of a repeated local time, or too close to the window's end.
    #[error("the time is not the start of a slot in the doctor's availability; choose a start from the slot list")]
    NotSlotStart,
    #[error("the doctor has time off during this slot")]
    TimeOff,
    #[error("the slot overlaps an existing booking")]
    AlreadyBooked,
}

impl DoctorSchedule {
    /// Checks whether a 30-minute slot starting at `slot_start` can be booked at `now`,
    /// given the doctor's existing `booked` ranges.
    ///
    /// # Errors
    ///
    /// The first `SlotRejection` that applies, in the order of its variants.
    pub fn is_bookable(
        &self,
        slot_start: DateTime<Utc>,
        booked: &[TimeRange],
        now: DateTime<Utc>,
        policy: &BookingPolicy,
    ) -> Result<(), SlotRejection> {
        // Timing comes first: it is cheap, and it keeps the calendar arithmetic below
        // away from instants far outside the horizon.
        check_timing(slot_start, now, policy)?;
        self.check_availability(slot_start)?;
        self.check_conflicts(slot_start, booked)
    }

    /// Accepts `slot_start` only if slot generation produces it, so the check and the
    /// slot list cannot disagree.
    fn check_availability(&self, slot_start: DateTime<Utc>) -> Result<(), SlotRejection> {
        let local = self.time_zone.local(slot_start);
        let windows = self.windows_containing(local);
        if windows.is_empty() {
            return Err(SlotRejection::OutsideAvailability);
        }

        let generated = windows
            .iter()
            .any(|(date, window)| self.window_slot_starts(*date, window).contains(&slot_start));
        if generated {
            Ok(())
        } else {
            Err(SlotRejection::NotSlotStart)
        }
    }

    /// Rejects a slot that overlaps the doctor's time off or an existing booking.
    pub(super) fn check_conflicts(
        &self,
        slot_start: DateTime<Utc>,
        booked: &[TimeRange],
    ) -> Result<(), SlotRejection> {
        let slot_end = slot_start + slot_length();
        let overlaps = |range: &TimeRange| range.start() < slot_end && slot_start < range.end();

        if self.time_off.iter().any(overlaps) {
            return Err(SlotRejection::TimeOff);
        }
        if booked.iter().any(overlaps) {
            return Err(SlotRejection::AlreadyBooked);
        }
        Ok(())
    }
}

/// Rejects a slot start in the past, inside the minimum notice, or after the horizon.
pub(super) fn check_timing(
    slot_start: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &BookingPolicy,
) -> Result<(), SlotRejection> {
    if slot_start < now {
        return Err(SlotRejection::InPast);
    }
    if slot_start < now + policy.minimum_notice {
        return Err(SlotRejection::InsideMinimumNotice);
    }
    if slot_start > now + policy.horizon {
        return Err(SlotRejection::BeyondHorizon);
    }
    Ok(())
}

/// Formats a duration in the largest whole unit that fits: "60 days", "1 hour", "90 minutes".
pub(super) fn describe_duration(duration: TimeDelta) -> String {
    let (count, unit) = if duration.num_seconds() % 86_400 == 0 && duration.num_days() != 0 {
        (duration.num_days(), "day")
    } else if duration.num_seconds() % 3_600 == 0 && duration.num_hours() != 0 {
        (duration.num_hours(), "hour")
    } else if duration.num_seconds() % 60 == 0 {
        (duration.num_minutes(), "minute")
    } else {
        (duration.num_seconds(), "second")
    };
    let plural = if count.abs() == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{every_day, schedule, utc};
    use super::super::DoctorTimeZone;
    use super::*;

    /// Monday 2023-06-05 in Berlin (UTC+2): a 09:00–17:00 window is 07:00Z–15:00Z.
    fn berlin_doctor() -> DoctorSchedule {
        schedule("Europe/Berlin", &every_day("09:00", "17:00"))
    }

    fn range(start: &str, end: &str) -> TimeRange {
        TimeRange::parse("range", start, end).unwrap()
    }

    fn is_listed(
        doctor: &DoctorSchedule,
        start: DateTime<Utc>,
        booked: &[TimeRange],
        now: DateTime<Utc>,
        policy: &BookingPolicy,
    ) -> bool {
        let from = start - TimeDelta::hours(12);
        doctor
            .list_slots(from, start + TimeDelta::hours(12), booked, now, policy)
            .unwrap()
            .slots
            .iter()
            .any(|slot| slot.start == start)
    }

    #[test]
    fn open_slot_is_bookable_and_listed() {
        let doctor = berlin_doctor();
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(doctor.is_bookable(start, &[], now, &policy), Ok(()));
        assert!(is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn slot_in_time_off_is_rejected() {
        let mut doctor = berlin_doctor();
        doctor.time_off = vec![range("2023-06-05T06:45:00Z", "2023-06-05T07:15:00Z")];
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(
            doctor.is_bookable(start, &[], now, &policy),
            Err(SlotRejection::TimeOff)
        );
        assert!(!is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn booked_slot_is_rejected() {
        let doctor = berlin_doctor();
        let booked = [range("2023-06-05T07:00:00Z", "2023-06-05T07:30:00Z")];
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(
            doctor.is_bookable(start, &booked, now, &policy),
            Err(SlotRejection::AlreadyBooked)
        );
        assert!(!is_listed(&doctor, start, &booked, now, &policy));
    }

    #[test]
    fn slot_next_to_booking_is_bookable() {
        let doctor = berlin_doctor();
        let booked = [range("2023-06-05T07:00:00Z", "2023-06-05T07:30:00Z")];
        let start = utc("2023-06-05T07:30:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        assert_eq!(
            doctor.is_bookable(start, &booked, now, &BookingPolicy::default()),
            Ok(())
        );
    }

    #[test]
    fn past_slot_is_rejected() {
        let doctor = berlin_doctor();
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-05T07:10:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(
            doctor.is_bookable(start, &[], now, &policy),
            Err(SlotRejection::InPast)
        );
        assert!(!is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn slot_inside_minimum_notice_is_rejected() {
        let doctor = berlin_doctor();
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-05T06:00:01Z");
        let policy = BookingPolicy::default();
        assert_eq!(
            doctor.is_bookable(start, &[], now, &policy),
            Err(SlotRejection::InsideMinimumNotice)
        );
        assert!(!is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn slot_at_minimum_notice_is_bookable() {
        let doctor = berlin_doctor();
        let start = utc("2023-06-05T07:00:00Z");
        let now = utc("2023-06-05T06:00:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(doctor.is_bookable(start, &[], now, &policy), Ok(()));
        assert!(is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn slot_beyond_horizon_is_rejected() {
        let doctor = berlin_doctor();
        let now = utc("2023-06-05T07:00:00Z");
        let start = utc("2023-08-04T07:30:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(
            doctor.is_bookable(start, &[], now, &policy),
            Err(SlotRejection::BeyondHorizon)
        );
        assert!(!is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn slot_at_horizon_is_bookable() {
        let doctor = berlin_doctor();
        let now = utc("2023-06-05T07:00:00Z");
        // Exactly 60 days after now.
        let start = utc("2023-08-04T07:00:00Z");
        let policy = BookingPolicy::default();
        assert_eq!(doctor.is_bookable(start, &[], now, &policy), Ok(()));
        assert!(is_listed(&doctor, start, &[], now, &policy));
    }

    #[test]
    fn unaligned_start_is_rejected() {
        let doctor = berlin_doctor();
        // 09:10 in Berlin.
        let start = utc("2023-06-05T07:10:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        assert_eq!(
            doctor.is_bookable(start, &[], now, &BookingPolicy::default()),
            Err(SlotRejection::NotSlotStart)
        );
    }

    #[test]
    fn start_with_seconds_is_rejected() {
        let doctor = berlin_doctor();
        let start = utc("2023-06-05T07:00:01Z");
        let now = utc("2023-06-04T12:00:00Z");
        assert_eq!(
            doctor.is_bookable(start, &[], now, &BookingPolicy::default()),
            Err(SlotRejection::NotSlotStart)
        );
    }

    #[test]
    fn start_outside_windows_is_rejected() {
        let doctor = berlin_doctor();
        // 18:00 in Berlin.
        let start = utc("2023-06-05T16:00:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        assert_eq!(
            doctor.is_bookable(start, &[], now, &BookingPolicy::default()),
            Err(SlotRejection::OutsideAvailability)
        );
    }

    #[test]
    fn slot_past_window_end_is_rejected() {
        let doctor = schedule("Europe/Berlin", &every_day("09:00", "09:45"));
        // 09:30 in Berlin: inside the window, but the slot would end at 10:00.
        let start = utc("2023-06-05T07:30:00Z");
        let now = utc("2023-06-04T12:00:00Z");
        assert_eq!(
            doctor.is_bookable(start, &[], now, &BookingPolicy::default()),
            Err(SlotRejection::NotSlotStart)
        );
    }

    #[test]
    fn repeated_local_time_is_bookable_once() {
        let doctor = schedule("America/New_York", &[("sunday", "00:30", "02:30")]);
        let now = utc("2023-11-04T00:00:00Z");
        let policy = BookingPolicy::default();
        // 01:30 EDT, the first occurrence, is a slot.
        assert_eq!(
            doctor.is_bookable(utc("2023-11-05T05:30:00Z"), &[], now, &policy),
            Ok(())
        );
        // 01:30 EST, the second occurrence, is not.
        assert_eq!(
            doctor.is_bookable(utc("2023-11-05T06:30:00Z"), &[], now, &policy),
            Err(SlotRejection::NotSlotStart)
        );
    }

    #[test]
    fn zone_change_keeps_bookings_and_moves_slots() {
        let mut doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        let now = utc("2023-06-01T00:00:00Z");
        let policy = BookingPolicy::default();
        // 09:00 EDT on Tuesday 2023-06-06, booked while the doctor was in New York.
        let booking = range("2023-06-06T13:00:00Z", "2023-06-06T13:30:00Z");
        assert_eq!(
            doctor.is_bookable(booking.start(), &[], now, &policy),
            Ok(())
        );

        doctor.time_zone = DoctorTimeZone::parse("time_zone", "Europe/Berlin").unwrap();
        let from = utc("2023-06-06T00:00:00Z");
        let list = doctor
            .list_slots(from, from + TimeDelta::days(1), &[booking], now, &policy)
            .unwrap();

        // Slots follow 09:00–17:00 Berlin time (07:00Z–15:00Z) now. The booking keeps its
        // instant, 15:00 in Berlin, and blocks that slot.
        assert_eq!(list.time_zone.name(), "Europe/Berlin");
        assert_eq!(list.slots[0].start, utc("2023-06-06T07:00:00Z"));
        assert_eq!(
            list.slots.last().unwrap().start,
            utc("2023-06-06T14:30:00Z")
        );
        assert_eq!(list.slots.len(), 15);
        assert!(list.slots.iter().all(|slot| slot.start != booking.start()));
        assert_eq!(
            doctor.is_bookable(booking.start(), &[booking], now, &policy),
            Err(SlotRejection::AlreadyBooked)
        );
    }

    #[test]
    fn zone_change_exposes_old_slot_as_outside() {
        let mut doctor = schedule("America/New_York", &every_day("09:00", "17:00"));
        doctor.time_zone = DoctorTimeZone::parse("time_zone", "Europe/Berlin").unwrap();
        let now = utc("2023-06-01T00:00:00Z");
        // 16:30 EDT was a slot in New York; it is 22:30 in Berlin.
        let start = utc("2023-06-06T20:30:00Z");
        assert_eq!(
            doctor.is_bookable(start, &[], now, &BookingPolicy::default()),
            Err(SlotRejection::OutsideAvailability)
        );
    }

    #[test]
    fn policy_rejects_negative_notice() {
        let error = BookingPolicy::new(TimeDelta::minutes(-5), TimeDelta::days(60)).unwrap_err();
        assert_eq!(error.field, "minimum_notice");
        assert!(error.detail.contains("-5 minutes"), "{}", error.detail);
    }

    #[test]
    fn policy_rejects_horizon_within_notice() {
        let error = BookingPolicy::new(TimeDelta::hours(2), TimeDelta::hours(1)).unwrap_err();
        assert_eq!(error.field, "horizon");
        assert!(
            error.detail.contains("minimum notice of 2 hours"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn policy_default_values() {
        let policy = BookingPolicy::default();
        assert_eq!(policy.minimum_notice(), TimeDelta::hours(1));
        assert_eq!(policy.horizon(), TimeDelta::days(60));
    }

    #[test]
    fn duration_descriptions() {
        assert_eq!(describe_duration(TimeDelta::days(60)), "60 days");
        assert_eq!(describe_duration(TimeDelta::hours(1)), "1 hour");
        assert_eq!(describe_duration(TimeDelta::minutes(90)), "90 minutes");
        assert_eq!(describe_duration(TimeDelta::seconds(45)), "45 seconds");
    }
}
