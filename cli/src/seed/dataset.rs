//! The generated data: names, e-mail addresses, doctor profiles, weekly windows and time
//! off. Every value derives from the run id, the random seed and the item's index, so a
//! seed reproduces the same shape of data while the run id keeps e-mail addresses and
//! license numbers unique across runs.

use chrono::{DateTime, Duration as TimeDelta, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use medflow_domain::doctor::SPECIALTIES;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Independent random streams, so adding draws to one part of the data leaves the others
/// unchanged.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    Doctor = 1,
    Patient = 2,
    Review = 3,
    Contest = 4,
    Booking = 5,
    Change = 6,
}

/// Returns the random generator of item `index` in `stream`.
pub fn item_rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    // SplitMix64 finalizer, so nearby indexes get unrelated generator seeds.
    let mut mixed = seed ^ (stream as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    StdRng::seed_from_u64(mixed ^ (mixed >> 31))
}

/// A region where doctors practise: its IANA zone, license authority and languages.
pub struct Region {
    pub time_zone: &'static str,
    /// ISO 3166 country code, the license number's prefix.
    pub country: &'static str,
    pub authority: &'static str,
    /// ISO 639-1 codes; every doctor of the region speaks the first.
    pub languages: &'static [&'static str],
}

/// Regions in zones with different offsets and daylight-saving rules. The United States
/// and Europe switch on different dates, and Sydney, Auckland and Santiago switch in the
/// southern seasons. Kolkata (+05:30) and Kathmandu (+05:45) have fractional offsets,
/// while Tokyo, Lagos and São Paulo keep one offset all year.
pub const REGIONS: &[Region] = &[
    Region {
        time_zone: "America/New_York",
        country: "US",
        authority: "New York State Education Department",
        languages: &["en", "es", "zh"],
    },
    Region {
        time_zone: "Europe/Berlin",
        country: "DE",
        authority: "Ärztekammer Berlin",
        languages: &["de", "en", "tr"],
    },
    Region {
        time_zone: "Australia/Sydney",
        country: "AU",
        authority: "Australian Health Practitioner Regulation Agency",
        languages: &["en", "zh", "el"],
    },
    Region {
        time_zone: "Asia/Kolkata",
        country: "IN",
        authority: "National Medical Commission",
        languages: &["hi", "en", "ta", "bn"],
    },
    Region {
        time_zone: "America/Santiago",
        country: "CL",
        authority: "Superintendencia de Salud",
        languages: &["es", "en"],
    },
    Region {
        time_zone: "Pacific/Auckland",
        country: "NZ",
        authority: "Medical Council of New Zealand",
        languages: &["en", "mi", "sm"],
    },
    Region {
        time_zone: "Asia/Tokyo",
        country: "JP",
        authority: "Ministry of Health, Labour and Welfare",
        languages: &["ja", "en"],
    },
    Region {
        time_zone: "Africa/Lagos",
        country: "NG",
        authority: "Medical and Dental Council of Nigeria",
        languages: &["en", "yo", "ig", "ha"],
    },
    Region {
        time_zone: "Europe/London",
        country: "GB",
        authority: "General Medical Council",
        languages: &["en", "pl", "ur"],
    },
    Region {
        time_zone: "America/Los_Angeles",
        country: "US",
        authority: "Medical Board of California",
        languages: &["en", "es", "tl"],
    },
    Region {
        time_zone: "America/Sao_Paulo",
        country: "BR",
        authority: "Conselho Federal de Medicina",
        languages: &["pt", "es", "en"],
    },
    Region {
        time_zone: "Asia/Kathmandu",
        country: "NP",
        authority: "Nepal Medical Council",
        languages: &["ne", "en", "hi"],
    },
];

const FIRST_NAMES: &[&str] = &[
    "Amara", "Lukas", "Mei", "Diego", "Sofia", "Arjun", "Yuki", "Chinedu", "Isabela", "Liam",
    "Aroha", "Fatima", "Noah", "Priya", "Kenji", "Olga", "Tomas", "Zanele", "Hannah", "Mateo",
    "Leila", "Ravi", "Ingrid", "Kwame", "Elena", "Hiro", "Nadia", "Samuel", "Ana", "Felix",
    "Tariq", "Maya", "Jonas", "Ife", "Camila", "Emil", "Sakura", "Omar", "Grace", "Pablo",
];

const SURNAMES: &[&str] = &[
    "Okafor",
    "Brandt",
    "Tanaka",
    "Alvarez",
    "Rossi",
    "Sharma",
    "Sato",
    "Nwosu",
    "Costa",
    "Murphy",
    "Ngata",
    "Haddad",
    "Smith",
    "Iyer",
    "Kobayashi",
    "Petrova",
    "Novak",
    "Dlamini",
    "Schmidt",
    "Fernandez",
    "Karimi",
    "Patel",
    "Larsen",
    "Mensah",
    "Popescu",
    "Yamamoto",
    "Rahman",
    "Cohen",
    "Silva",
    "Weber",
    "Aziz",
    "Reddy",
    "Berg",
    "Adeyemi",
    "Moreno",
    "Lindqvist",
    "Suzuki",
    "Hassan",
    "Thompson",
    "Rojas",
];

const BIOGRAPHY_OPENINGS: &[&str] = &[
    "Video consultations for adults and teenagers.",
    "Follow-up visits and second opinions online.",
    "Focus on preventive care and long-term treatment plans.",
    "Twenty years of clinical practice, now also online.",
    "Evening consultations for working patients.",
];

/// A person's name and e-mail address.
pub struct Identity {
    pub name: String,
    pub email: String,
}

fn identity(rng: &mut StdRng, role: &str, index: usize, run: &str) -> Identity {
    let first = FIRST_NAMES.choose(rng).expect("names");
    let last = SURNAMES.choose(rng).expect("names");
    Identity {
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}.{role}{index}.{run}@example.org",
            first.to_lowercase(),
            last.to_lowercase()
        ),
    }
}

pub fn patient_identity(seed: u64, index: usize, run: &str) -> Identity {
    let mut rng = item_rng(seed, Stream::Patient, index as u64);
    identity(&mut rng, "patient", index, run)
}

/// A weekly window in the doctor's local time; `end` before `start` runs past midnight.
#[derive(Debug, Clone, Copy)]
pub struct LocalWindow {
    pub weekday: &'static str,
    /// Minutes after local midnight.
    pub start: u32,
    /// Minutes after local midnight, up to 1440 for a window that ends at midnight.
    pub end: u32,
}

impl LocalWindow {
    pub fn start_text(&self) -> String {
        clock_text(self.start)
    }

    pub fn end_text(&self) -> String {
        clock_text(self.end)
    }
}

fn clock_text(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Everything a seeded doctor enters about themselves.
pub struct DoctorProfile {
    pub identity: Identity,
    pub display_name: String,
    pub specialty: &'static str,
    pub time_zone: &'static str,
    pub license_number: String,
    pub issuing_authority: &'static str,
    pub biography: String,
    pub languages: Vec<&'static str>,
    pub windows: Vec<LocalWindow>,
    /// Absolute time off ranges.
    pub time_off: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Generates doctor `index`. Regions and specialties rotate with the index, so that
/// every region and specialty occurs once there are enough doctors.
pub fn doctor_profile(
    seed: u64,
    index: usize,
    run: &str,
    now: DateTime<Utc>,
    weeks: u32,
) -> DoctorProfile {
    let mut rng = item_rng(seed, Stream::Doctor, index as u64);
    let region = &REGIONS[index % REGIONS.len()];
    let specialty = SPECIALTIES[index % SPECIALTIES.len()];
    let identity = identity(&mut rng, "doctor", index, run);
    let display_name = format!("Dr. {}", identity.name);

    let mut languages = vec![region.languages[0]];
    for language in &region.languages[1..] {
        if rng.gen_bool(0.5) {
            languages.push(language);
        }
    }

    let opening = BIOGRAPHY_OPENINGS.choose(&mut rng).expect("openings");
    let biography = format!("{opening} Specialty: {}.", specialty.replace('-', " "));
    let zone: Tz = region
        .time_zone
        .parse()
        .expect("regions use valid IANA zone names");
    DoctorProfile {
        license_number: format!("{}-{}-{index:05}", region.country, run.to_ascii_uppercase()),
        issuing_authority: region.authority,
        time_zone: region.time_zone,
        windows: weekly_windows(&mut rng),
        time_off: time_off(&mut rng, zone, now, weeks),
        identity,
        display_name,
        specialty,
        biography,
        languages,
    }
}

/// Weekday names as the availability API spells them, Monday first.
pub use medflow_domain::availability::WEEKDAY_NAMES as WEEKDAYS;

/// Picks one of several weekly patterns. Daytime patterns move by up to an hour either
/// way in half-hour steps; the night pattern has windows that run past midnight.
fn weekly_windows(rng: &mut StdRng) -> Vec<LocalWindow> {
    let hours = |weekdays: &[usize], start: u32, end: u32| -> Vec<LocalWindow> {
        weekdays
            .iter()
            .map(|&day| LocalWindow {
                weekday: WEEKDAYS[day],
                start,
                end,
            })
            .collect()
    };
    let weekdays = [0, 1, 2, 3, 4];
    let pattern = rng.gen_range(0..8);
    let mut windows = match pattern {
        0 => hours(&weekdays, 9 * 60, 17 * 60),
        1 => [
            hours(&weekdays, 8 * 60, 12 * 60),
            hours(&weekdays, 13 * 60 + 30, 17 * 60 + 30),
        ]
        .concat(),
        2 => [
            hours(&[0, 2, 4], 8 * 60 + 30, 14 * 60 + 30),
            hours(&[1, 3], 12 * 60 + 30, 19 * 60),
        ]
        .concat(),
        3 => [
            hours(&[0, 1, 2, 3], 17 * 60, 21 * 60),
            hours(&[5], 9 * 60, 13 * 60),
        ]
        .concat(),
        4 => [
            hours(&[4], 14 * 60, 20 * 60),
            hours(&[5, 6], 10 * 60, 16 * 60),
        ]
        .concat(),
        5 => hours(&weekdays, 7 * 60, 11 * 60),
        6 => hours(&[1, 2, 3], 8 * 60, 20 * 60),
        // Night consultations: 22:30 to 02:00 the next morning, and a Wednesday window
        // that starts after the Tuesday night ends.
        _ => {
            return [
                hours(&[1, 3, 5], 22 * 60 + 30, 2 * 60),
                hours(&[2], 10 * 60, 14 * 60),
            ]
            .concat()
        }
    };
    // Every daytime pattern lies within 07:00 to 21:00, so a shift of up to an hour
    // keeps each window inside its day.
    let shift = rng.gen_range(-2i32..=2) * 30;
    for window in &mut windows {
        window.start = window.start.saturating_add_signed(shift);
        window.end = window.end.saturating_add_signed(shift);
    }
    windows
}

/// Zero to three time off ranges within the seeded weeks: whole days away or a free
/// afternoon, in the doctor's local time.
fn time_off(
    rng: &mut StdRng,
    zone: Tz,
    now: DateTime<Utc>,
    weeks: u32,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let days = i64::from(weeks) * 7;
    let today = now.with_timezone(&zone).date_naive();
    let count = rng.gen_range(0..=3);
    let mut ranges = Vec::new();
    for _ in 0..count {
        let first_day = today + TimeDelta::days(rng.gen_range(2..days.max(3)));
        let range = if rng.gen_bool(0.5) {
            let length = rng.gen_range(1..=5);
            (
                local_instant(zone, first_day, 0),
                local_instant(zone, first_day + TimeDelta::days(length), 0),
            )
        } else {
            (
                local_instant(zone, first_day, 12 * 60),
                local_instant(zone, first_day, 18 * 60),
            )
        };
        ranges.push(range);
    }
    ranges
}

/// Converts a local date and time of day to UTC. A local time skipped by a
/// daylight-saving switch moves one hour later; an ambiguous one takes the earlier
/// instant.
fn local_instant(zone: Tz, date: NaiveDate, minutes: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).expect("valid time");
    let local = date.and_time(time);
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(local + TimeDelta::hours(1)))
                .earliest()
        })
        .expect("a local time exists within an hour of any skipped time")
        .with_timezone(&Utc)
}

pub const REJECTION_REASONS: &[&str] = &[
    "The license scan is not legible; upload a clearer copy.",
    "The license number does not match the issuing authority's register.",
    "The uploaded license has expired; upload the renewed one.",
];

pub const SUSPENSION_REASONS: &[&str] = &[
    "Patient complaints are under review by the medical board.",
    "The license renewal is overdue.",
];

pub const PATIENT_CANCELLATION_REASONS: &[&str] = &[
    "Feeling better.",
    "A conflict at work.",
    "Booked the wrong specialty.",
];

pub const DOCTOR_CANCELLATION_REASONS: &[&str] = &[
    "Called in for an emergency.",
    "The clinic is closed that day.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_as_zones() {
        for region in REGIONS {
            assert!(
                region.time_zone.parse::<Tz>().is_ok(),
                "{} is not an IANA zone",
                region.time_zone
            );
        }
    }

    #[test]
    fn doctor_profile_is_deterministic() {
        let now = Utc::now();
        let first = doctor_profile(7, 3, "abc12345", now, 4);
        let second = doctor_profile(7, 3, "abc12345", now, 4);
        assert_eq!(first.identity.email, second.identity.email);
        assert_eq!(first.windows.len(), second.windows.len());
        assert_eq!(first.time_off, second.time_off);
    }

    #[test]
    fn windows_stay_within_a_day() {
        for index in 0..200 {
            let mut rng = item_rng(1, Stream::Doctor, index);
            for window in weekly_windows(&mut rng) {
                assert!(window.start < 24 * 60, "{window:?}");
                assert!(window.end <= 24 * 60, "{window:?}");
                assert_ne!(window.start, window.end, "{window:?}");
            }
        }
    }

    #[test]
    fn time_off_ends_after_it_starts() {
        let zone: Tz = "America/Santiago".parse().unwrap();
        let mut rng = item_rng(1, Stream::Doctor, 0);
        for _ in 0..100 {
            for (start, end) in time_off(&mut rng, zone, Utc::now(), 4) {
                assert!(start < end);
            }
        }
    }
}
