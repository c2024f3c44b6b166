//! The availability engine: a doctor's weekly hours in their own time zone, time off,
//! and the 30-minute slots that patients can book. Pure logic, with no I/O and no clock:
//! callers pass `now`.
//!
//! Weekly windows are local wall-clock times, so 09:00–17:00 stays 09:00–17:00 local
//! across daylight-saving switches. Time off, bookings and slots are absolute UTC
//! instants, so they keep their meaning when the doctor changes time zone. The
//! daylight-saving rules for slots are documented in [`slots`].
//!
//! A slot is listed by [`DoctorSchedule::list_slots`] exactly when
//! [`DoctorSchedule::is_bookable`] accepts its start, because both build on the same
//! slot generation and the same checks.

mod rules;
mod schedule;
pub mod slots;
mod time_range;
mod window;
mod zone;

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod test_support;

pub use rules::{BookingPolicy, SlotRejection};
pub use schedule::{
    DoctorSchedule, RawWindow, WeeklyAvailability, MAX_WEEKLY_WINDOWS, WEEKDAY_NAMES,
};
pub use slots::{slot_length, Slot, SlotList, SLOT_MINUTES};
pub use time_range::{bookings_overlapping, TimeRange};
pub use window::AvailabilityWindow;
pub use zone::DoctorTimeZone;
