//! Property-style check that the slot list and the booking check agree: every start that
//! `list_slots` returns is accepted by `is_bookable`, and every instant on a 5-minute
//! grid that `is_bookable` accepts is listed. The cases cover daylight-saving switches
//! of an hour and of 30 minutes, half- and quarter-hour offsets, and a skipped day.

use std::collections::BTreeSet;

use chrono::{DateTime, Days, TimeDelta, Utc};

use super::test_support::{schedule, utc, WEEKDAYS};
use super::{BookingPolicy, DoctorSchedule, SlotRejection, TimeRange};

/// Zones with the start of a three-day range that contains one of their offset changes.
const CASES: [(&str, &str); 12] = [
    ("America/New_York", "2023-03-11T00:00:00Z"),
    ("America/New_York", "2023-11-04T00:00:00Z"),
    ("Europe/Berlin", "2023-03-25T00:00:00Z"),
    ("Europe/Berlin", "2023-10-28T00:00:00Z"),
    ("Australia/Lord_Howe", "2023-03-31T12:00:00Z"),
    ("Australia/Lord_Howe", "2023-09-29T12:00:00Z"),
    ("America/St_Johns", "2023-03-11T00:00:00Z"),
    ("America/St_Johns", "2023-11-04T00:00:00Z"),
    ("Pacific/Apia", "2011-12-28T12:00:00Z"),
    ("Asia/Kolkata", "2023-06-05T00:00:00Z"),
    ("Asia/Kathmandu", "2023-06-05T00:00:00Z"),
    ("Europe/Berlin", "2016-11-28T00:00:00Z"),
];

const RANGE_DAYS: i64 = 3;
const GRID_MINUTES: i64 = 5;

/// Weekly windows to test with: daytime and night windows on every day, whole days, and
/// a mix of midnight-spanning and unevenly aligned windows on single weekdays.
fn weekly_variants() -> Vec<Vec<(&'static str, &'static str, &'static str)>> {
    let mut day_and_night = Vec::new();
    for weekday in WEEKDAYS {
        day_and_night.push((weekday, "01:00", "04:00"));
        day_and_night.push((weekday, "09:15", "17:00"));
        day_and_night.push((weekday, "22:30", "00:30"));
    }
    let whole_days = WEEKDAYS
        .iter()
        .map(|weekday| (*weekday, "00:00", "24:00"))
        .collect();
    let mixed = vec![
        ("monday", "08:00", "12:00"),
        ("wednesday", "01:40", "02:50"),
        ("friday", "23:00", "02:15"),
        ("saturday", "23:45", "03:15"),
        ("sunday", "03:15", "05:00"),
        ("sunday", "23:00", "00:10"),
    ];
    vec![day_and_night, whole_days, mixed]
}

/// Returns `now` values that put the past and the minimum notice inside the range, and
/// then the horizon inside the range.
fn nows(from: DateTime<Utc>) -> [DateTime<Utc>; 2] {
    [
        from + TimeDelta::hours(7) + TimeDelta::minutes(10),
        from - TimeDelta::hours(12),
    ]
}

fn with_time_off(mut doctor: DoctorSchedule, from: DateTime<Utc>) -> DoctorSchedule {
    let start = from + TimeDelta::days(1) + TimeDelta::hours(3);
    let end = start + TimeDelta::hours(2) + TimeDelta::minutes(17);
    doctor.time_off = vec![TimeRange::new("time_off", start, end).unwrap()];
    doctor
}

fn bookings(from: DateTime<Utc>) -> Vec<TimeRange> {
    let first = from + TimeDelta::days(1) + TimeDelta::hours(14);
    let second = from + TimeDelta::days(2) + TimeDelta::hours(1) + TimeDelta::minutes(5);
    vec![
        TimeRange::new("booked", first, first + TimeDelta::minutes(45)).unwrap(),
        TimeRange::new("booked", second, second + TimeDelta::minutes(30)).unwrap(),
    ]
}

#[test]
fn slot_list_matches_booking_check() {
    let policy = BookingPolicy::new(TimeDelta::hours(1), TimeDelta::days(RANGE_DAYS)).unwrap();
    let mut rejections_seen = BTreeSet::new();

    for (zone, raw_from) in CASES {
        for weekly in weekly_variants() {
            for now in nows(utc(raw_from)) {
                let from = utc(raw_from);
                let to = from + TimeDelta::days(RANGE_DAYS);
                let doctor = with_time_off(schedule(zone, &weekly), from);
                let booked = bookings(from);
                let case = format!("{zone} from {raw_from}, now {now}, windows {weekly:?}");

                let listed: Vec<DateTime<Utc>> = doctor
                    .list_slots(from, to, &booked, now, &policy)
                    .unwrap()
                    .slots
                    .iter()
                    .map(|slot| slot.start)
                    .collect();

                for start in &listed {
                    assert_eq!(
                        doctor.is_bookable(*start, &booked, now, &policy),
                        Ok(()),
                        "listed {start} is not bookable: {case}"
                    );
                }

                let mut instant = from;
                while instant < to {
                    let verdict = doctor.is_bookable(instant, &booked, now, &policy);
                    assert_eq!(
                        listed.contains(&instant),
                        verdict.is_ok(),
                        "{instant}: is_bookable returned {verdict:?}: {case}"
                    );
                    if let Err(rejection) = verdict {
                        rejections_seen.insert(format!("{rejection:?}"));
                    }
                    instant += TimeDelta::minutes(GRID_MINUTES);
                }
            }
        }
    }

    // Each rejection reason must occur, so that every branch of both paths is compared.
    for rejection in [
        SlotRejection::InPast,
        SlotRejection::InsideMinimumNotice,
        SlotRejection::BeyondHorizon,
        SlotRejection::OutsideAvailability,
        SlotRejection::NotSlotStart,
        SlotRejection::TimeOff,
        SlotRejection::AlreadyBooked,
    ] {
        assert!(
            rejections_seen.contains(&format!("{rejection:?}")),
            "no instant was rejected as {rejection:?}"
        );
    }
}

#[test]
fn generated_starts_have_no_duplicates() {
    for (zone, raw_from) in CASES {
        for weekly in weekly_variants() {
            let doctor = schedule(zone, &weekly);
            let first_date = doctor.time_zone.local(utc(raw_from)).date() - Days::new(2);

            // Collects the raw generator output, before list_slots sorts and deduplicates.
            let mut starts: Vec<DateTime<Utc>> = first_date
                .iter_days()
                .take(RANGE_DAYS as usize + 4)
                .flat_map(|date| doctor.slot_starts_on(date))
                .collect();
            let generated = starts.len();
            starts.sort_unstable();
            starts.dedup();

            assert_eq!(
                starts.len(),
                generated,
                "{zone} from {raw_from}, windows {weekly:?}"
            );
        }
    }
}
