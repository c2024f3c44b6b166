//! Appointment phases. Patients find verified doctors in the directory, list their
//! slots and book them, and groups of patients request the same slot at once. Then some
//! appointments are cancelled or rescheduled. A slot taken meanwhile (409, or 422 once
//! it is too close) is an expected outcome, after which the patient tries another slot.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;

use super::client::{Endpoint, Expected, Reply, RequestFailed, Session};
use super::dataset::{self, item_rng, Stream};
use super::doctors::{DoctorStatus, SeededDoctor};
use super::patients::SeededPatient;
use super::progress::PhaseTiming;
use super::{for_each_bounded, Seeder, POLL_INTERVAL};
use crate::http::rfc3339;

/// Slot requests per booking or reschedule before the patient gives up.
pub(super) const MAX_ATTEMPTS: usize = 6;

/// Maximum wait for the directory to list the approved doctors, and at the end of a
/// run to match the final statuses.
const DIRECTORY_WAIT: Duration = Duration::from_secs(60);

/// Outcomes that a slot request may have besides success when other patients book at
/// the same time.
const SLOT_RACE: &[Expected] = &[
    Expected::problem(StatusCode::CONFLICT, "slot-taken"),
    Expected::problem(StatusCode::CONFLICT, "patient-overlap"),
    Expected::problem(StatusCode::UNPROCESSABLE_ENTITY, "slot-unavailable"),
];

/// Share of appointments cancelled by their patient, cancelled by their doctor and
/// rescheduled by their patient.
const PATIENT_CANCEL_SHARE: f64 = 0.15;
const DOCTOR_CANCEL_SHARE: f64 = 0.03;
const RESCHEDULE_SHARE: f64 = 0.15;

/// A booked appointment as the seeder tracks it.
struct Appointment {
    id: String,
    /// Index of the booking (or contest) that made it, which seeds its later change.
    job: u64,
    patient: usize,
    doctor: usize,
    start: String,
}

/// Counts of the appointment phases.
#[derive(Debug, Clone, Default)]
pub struct BookingOutcome {
    pub phases: Vec<PhaseTiming>,
    pub requested: usize,
    pub booked: u64,
    /// Bookings abandoned after [`MAX_ATTEMPTS`] slots were taken meanwhile.
    pub gave_up: u64,
    /// Slot requests that got an expected conflict and were retried with another slot.
    pub retried_after_conflict: u64,
    pub cancelled_by_patients: u64,
    pub cancelled_by_doctors: u64,
    pub rescheduled: u64,
    pub reschedules_gave_up: u64,
    pub contests: ContestOutcome,
    /// Whether the directory listed every approved doctor within [`DIRECTORY_WAIT`]
    /// before the bookings began; `None` when nothing was booked.
    pub directory_ready: Option<bool>,
}

/// Results of the slots that several patients requested at once.
#[derive(Debug, Clone, Default)]
pub struct ContestOutcome {
    pub requested: u64,
    /// Contests held: a slot was found and requested by every contender.
    pub slots: u64,
    pub contenders: u64,
    /// Slots that exactly one patient got.
    pub single_winner: u64,
    /// Slots that no patient got, for example because the minimum notice passed meanwhile.
    pub no_winner: u64,
    /// Slots that more than one patient got: a double booking.
    pub double_booked: u64,
    /// Requests that lost with 409.
    pub lost_with_conflict: u64,
}

enum Booked {
    Appointment(Appointment),
    GaveUp,
}

/// Runs the contests, the bookings and the changes.
pub async fn run_all(
    seeder: &Seeder,
    doctors: &[SeededDoctor],
    bookable: &[usize],
    patients: &[SeededPatient],
) -> BookingOutcome {
    let mut outcome = BookingOutcome {
        requested: seeder.settings.bookings.unwrap_or(seeder.settings.patients),
        ..BookingOutcome::default()
    };
    let Some(first) = patients.first() else {
        return outcome;
    };
    if bookable.is_empty() {
        seeder
            .progress
            .note("no doctor was approved, so nothing can be booked");
        return outcome;
    }
    let bookable_ids: HashSet<&str> = bookable
        .iter()
        .map(|&position| doctors[position].account_id())
        .collect();
    outcome.directory_ready = Some(wait_for_directory(seeder, &first.session, &bookable_ids).await);

    let phases = AppointmentPhases {
        seeder,
        doctors,
        bookable,
        patients,
    };
    let mut appointments = phases.contests(&mut outcome).await;
    appointments.extend(phases.bookings(&mut outcome).await);
    phases.changes(appointments, &mut outcome).await;
    outcome
}

/// Inputs shared by the appointment phases.
struct AppointmentPhases<'a> {
    seeder: &'a Seeder,
    doctors: &'a [SeededDoctor],
    bookable: &'a [usize],
    patients: &'a [SeededPatient],
}

impl AppointmentPhases<'_> {
    /// Has groups of patients request the same slot at the same moment.
    async fn contests(&self, outcome: &mut BookingOutcome) -> Vec<Appointment> {
        let settings = &self.seeder.settings;
        let contenders = usize::from(settings.contenders).min(self.patients.len());
        let slots = if contenders < 2 {
            0
        } else {
            settings.contested_slots
        };
        outcome.contests.requested = slots as u64;
        let phase = self.seeder.progress.phase("contested slots", slots as u64);
        let limit = (self.seeder.concurrency() / contenders.max(1)).max(1);
        let results = for_each_bounded(0..slots, limit, &phase, |contest| {
            self.contest(contest, contenders)
        })
        .await;
        outcome.phases.push(phase.finish());

        let mut appointments = Vec::new();
        for result in results.into_iter().flatten() {
            let contests = &mut outcome.contests;
            contests.slots += 1;
            contests.contenders += contenders as u64;
            contests.lost_with_conflict += result.lost_with_conflict;
            match result.winners.len() {
                0 => contests.no_winner += 1,
                1 => contests.single_winner += 1,
                _ => contests.double_booked += 1,
            }
            appointments.extend(result.winners);
        }
        if outcome.contests.double_booked > 0 {
            self.seeder.progress.note(&format!(
                "{} contested slots were booked by more than one patient",
                outcome.contests.double_booked
            ));
        }
        appointments
    }

    async fn contest(&self, contest: usize, contenders: usize) -> Option<ContestResult> {
        let mut rng = item_rng(self.seeder.random_seed, Stream::Contest, contest as u64);
        let doctor = self.bookable[contest % self.bookable.len()];
        let group: Vec<usize> = (0..contenders)
            .map(|member| (contest * contenders + member) % self.patients.len())
            .collect();
        let week = contest as u32 % self.seeder.settings.weeks;
        let (from, to) = self.week_range(week);
        let session = &self.patients[group[0]].session;
        let mut slots = self.list_slots(session, doctor, from, to).await.ok()?;
        if slots.is_empty() {
            // The doctor is away or fully booked that week.
            let (from, to) = self.whole_range();
            slots = self.list_slots(session, doctor, from, to).await.ok()?;
        }
        let start = slots.choose(&mut rng)?.clone();

        let requests = group
            .iter()
            .map(|&patient| self.book_slot(patient, doctor, &start));
        let replies = futures::future::join_all(requests).await;
        let job = (self.requested_bookings() + contest) as u64;
        let mut result = ContestResult {
            winners: Vec::new(),
            lost_with_conflict: 0,
        };
        for (reply, &patient) in replies.into_iter().zip(&group) {
            let Ok(reply) = reply else { continue };
            if reply.is_success() {
                if let Some(id) = reply.json()["appointment_id"].as_str() {
                    result.winners.push(Appointment {
                        id: id.to_owned(),
                        job,
                        patient,
                        doctor,
                        start: start.clone(),
                    });
                }
            } else if reply.status == StatusCode::CONFLICT {
                result.lost_with_conflict += 1;
            }
        }
        Some(result)
    }

    /// Books appointments for patients picked at random.
    async fn bookings(&self, outcome: &mut BookingOutcome) -> Vec<Appointment> {
        let count = self.requested_bookings();
        let phase = self.seeder.progress.phase("bookings", count as u64);
        let results = for_each_bounded(0..count, self.seeder.concurrency(), &phase, |job| {
            self.booking(job as u64)
        })
        .await;
        outcome.phases.push(phase.finish());

        let mut appointments = Vec::new();
        for result in results {
            let Ok((booked, conflicts)) = result else {
                continue;
            };
            outcome.retried_after_conflict += conflicts;
            match booked {
                Booked::Appointment(appointment) => {
                    outcome.booked += 1;
                    appointments.push(appointment);
                }
                Booked::GaveUp => outcome.gave_up += 1,
            }
        }
        appointments
    }

    /// Books one appointment for a random patient, who browses the directory for a
    /// specialty, picks a seeded doctor and lists a week of their slots. Tries other
    /// slots after conflicts, and returns the outcome with the number of conflicts met.
    async fn booking(&self, job: u64) -> Result<(Booked, u64), RequestFailed> {
        let mut rng = item_rng(self.seeder.random_seed, Stream::Booking, job);
        let patient = rng.gen_range(0..self.patients.len());
        let session = &self.patients[patient].session;
        let doctor = self.find_doctor(session, &mut rng).await?;
        let week = rng.gen_range(0..self.seeder.settings.weeks);
        let (from, to) = self.week_range(week);
        let mut slots = self.list_slots(session, doctor, from, to).await?;
        let mut conflicts = 0;
        let mut listed_whole_range = false;
        for _ in 0..MAX_ATTEMPTS {
            if slots.is_empty() {
                if listed_whole_range {
                    break;
                }
                // The week is full: look at every seeded week instead.
                listed_whole_range = true;
                let (from, to) = self.whole_range();
                slots = self.list_slots(session, doctor, from, to).await?;
                continue;
            }
            let start = slots.swap_remove(rng.gen_range(0..slots.len()));
            let reply = self.book_slot(patient, doctor, &start).await?;
            if reply.is_success() {
                let id = reply.json()["appointment_id"]
                    .as_str()
                    .ok_or(RequestFailed)?
                    .to_owned();
                let appointment = Appointment {
                    id,
                    job,
                    patient,
                    doctor,
                    start,
                };
                return Ok((Booked::Appointment(appointment), conflicts));
            }
            conflicts += 1;
        }
        Ok((Booked::GaveUp, conflicts))
    }

    /// Lists one page of the directory for the specialty of a random approved doctor,
    /// sometimes narrowed to a language, and picks one of this run's doctors on it. The
    /// page may contain only other runs' doctors. In that case the patient takes the
    /// doctor they had in mind.
    async fn find_doctor(
        &self,
        session: &Session,
        rng: &mut StdRng,
    ) -> Result<usize, RequestFailed> {
        let in_mind = self.bookable[rng.gen_range(0..self.bookable.len())];
        let doctor = &self.doctors[in_mind];
        let mut url = format!(
            "{}/doctors?specialty={}&limit=20",
            self.seeder.settings.platform.query_url, doctor.specialty
        );
        if rng.gen_bool(0.2) {
            let zone_languages = dataset::REGIONS
                .iter()
                .find(|region| region.time_zone == doctor.time_zone)
                .map(|region| region.languages[0]);
            if let Some(language) = zone_languages {
                url.push_str(&format!("&language={language}"));
            }
        }
        let http = self.seeder.client.http();
        let page = self
            .seeder
            .client
            .send_as(session, Endpoint::Directory, &[], || http.get(&url))
            .await?;
        let positions: HashMap<&str, usize> = self
            .bookable
            .iter()
            .map(|&position| (self.doctors[position].account_id(), position))
            .collect();
        let listed: Vec<usize> = page.json()["doctors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| positions.get(entry["doctor_id"].as_str()?).copied())
            .collect();
        Ok(listed.choose(rng).copied().unwrap_or(in_mind))
    }

    /// Cancels or reschedules a share of the appointments.
    async fn changes(&self, appointments: Vec<Appointment>, outcome: &mut BookingOutcome) {
        let phase = self
            .seeder
            .progress
            .phase("changes", appointments.len() as u64);
        let results = for_each_bounded(
            appointments,
            self.seeder.concurrency(),
            &phase,
            |appointment| self.change(appointment),
        )
        .await;
        outcome.phases.push(phase.finish());
        for result in results {
            match result {
                Ok(Change::CancelledByPatient) => outcome.cancelled_by_patients += 1,
                Ok(Change::CancelledByDoctor) => outcome.cancelled_by_doctors += 1,
                Ok(Change::Rescheduled { conflicts }) => {
                    outcome.rescheduled += 1;
                    outcome.retried_after_conflict += conflicts;
                }
                Ok(Change::RescheduleGaveUp { conflicts }) => {
                    outcome.reschedules_gave_up += 1;
                    outcome.retried_after_conflict += conflicts;
                }
                Ok(Change::Kept) | Err(RequestFailed) => {}
            }
        }
    }

    async fn change(&self, appointment: Appointment) -> Result<Change, RequestFailed> {
        let mut rng = item_rng(self.seeder.random_seed, Stream::Change, appointment.job);
        let draw: f64 = rng.gen();
        if draw < PATIENT_CANCEL_SHARE {
            let reasons = dataset::PATIENT_CANCELLATION_REASONS;
            let session = &self.patients[appointment.patient].session;
            let reason = reasons.choose(&mut rng).expect("reasons");
            self.cancel(session, &appointment, reason).await?;
            return Ok(Change::CancelledByPatient);
        }
        if draw < PATIENT_CANCEL_SHARE + DOCTOR_CANCEL_SHARE {
            let reasons = dataset::DOCTOR_CANCELLATION_REASONS;
            let session = &self.doctors[appointment.doctor].session;
            let reason = reasons.choose(&mut rng).expect("reasons");
            self.cancel(session, &appointment, reason).await?;
            return Ok(Change::CancelledByDoctor);
        }
        if draw < PATIENT_CANCEL_SHARE + DOCTOR_CANCEL_SHARE + RESCHEDULE_SHARE {
            return self.reschedule(&appointment, &mut rng).await;
        }
        Ok(Change::Kept)
    }

    async fn cancel(
        &self,
        session: &Session,
        appointment: &Appointment,
        reason: &str,
    ) -> Result<(), RequestFailed> {
        let url = format!(
            "{}/appointments/{}/cancellation",
            self.seeder.settings.platform.command_url, appointment.id
        );
        let body = json!({ "reason": reason });
        let http = self.seeder.client.http();
        self.seeder
            .client
            .send_as(session, Endpoint::Cancel, &[], || {
                http.post(&url).json(&body)
            })
            .await?;
        Ok(())
    }

    /// Moves the appointment to another free slot of the same doctor in a random week.
    async fn reschedule(
        &self,
        appointment: &Appointment,
        rng: &mut StdRng,
    ) -> Result<Change, RequestFailed> {
        let session = &self.patients[appointment.patient].session;
        let week = rng.gen_range(0..self.seeder.settings.weeks);
        let (from, to) = self.week_range(week);
        let mut slots = self
            .list_slots(session, appointment.doctor, from, to)
            .await?;
        slots.retain(|start| *start != appointment.start);
        let url = format!(
            "{}/appointments/{}/reschedule",
            self.seeder.settings.platform.command_url, appointment.id
        );
        let http = self.seeder.client.http();
        let mut conflicts = 0;
        for _ in 0..MAX_ATTEMPTS {
            if slots.is_empty() {
                break;
            }
            let start = slots.swap_remove(rng.gen_range(0..slots.len()));
            let body = json!({ "start": start });
            let reply = self
                .seeder
                .client
                .send_as(session, Endpoint::Reschedule, SLOT_RACE, || {
                    http.post(&url).json(&body)
                })
                .await?;
            if reply.is_success() {
                return Ok(Change::Rescheduled { conflicts });
            }
            conflicts += 1;
        }
        Ok(Change::RescheduleGaveUp { conflicts })
    }

    async fn book_slot(
        &self,
        patient: usize,
        doctor: usize,
        start: &str,
    ) -> Result<Reply, RequestFailed> {
        let url = format!("{}/appointments", self.seeder.settings.platform.command_url);
        let body = json!({ "doctor_id": self.doctors[doctor].account_id(), "start": start });
        let http = self.seeder.client.http();
        self.seeder
            .client
            .send_as(
                &self.patients[patient].session,
                Endpoint::Book,
                SLOT_RACE,
                || http.post(&url).json(&body),
            )
            .await
    }

    /// Returns the starts of the doctor's free slots in `[from, to)`, as the API wrote them.
    async fn list_slots(
        &self,
        session: &Session,
        doctor: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, RequestFailed> {
        let url = format!(
            "{}/doctors/{}/slots?from={}&to={}",
            self.seeder.settings.platform.query_url,
            self.doctors[doctor].account_id(),
            rfc3339(from),
            rfc3339(to)
        );
        let http = self.seeder.client.http();
        let reply = self
            .seeder
            .client
            .send_as(session, Endpoint::Slots, &[], || http.get(&url))
            .await?;
        Ok(reply.json()["slots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|slot| slot["start"].as_str().map(str::to_owned))
            .collect())
    }

    /// Week `week` of the seeded range, starting no earlier than now.
    fn week_range(&self, week: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.seeder.now + TimeDelta::days(7 * i64::from(week));
        let end = start + TimeDelta::days(7);
        (start.max(Utc::now()), end)
    }

    /// Returns the whole seeded range from now on.
    fn whole_range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let weeks = i64::from(self.seeder.settings.weeks);
        let end = self.seeder.now + TimeDelta::days(7 * weeks);
        (Utc::now(), end)
    }

    fn requested_bookings(&self) -> usize {
        self.seeder
            .settings
            .bookings
            .unwrap_or(self.seeder.settings.patients)
    }
}

struct ContestResult {
    winners: Vec<Appointment>,
    lost_with_conflict: u64,
}

enum Change {
    Kept,
    CancelledByPatient,
    CancelledByDoctor,
    Rescheduled { conflicts: u64 },
    RescheduleGaveUp { conflicts: u64 },
}

/// Collects the ids of every doctor the directory lists, page by page.
async fn list_directory(
    seeder: &Seeder,
    session: &Session,
) -> Result<HashSet<String>, RequestFailed> {
    let base = format!("{}/doctors?limit=100", seeder.settings.platform.query_url);
    let http = seeder.client.http();
    let mut listed = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{base}&cursor={cursor}"),
            None => base.clone(),
        };
        let page = seeder
            .client
            .send_as(session, Endpoint::Directory, &[], || http.get(&url))
            .await?;
        let page = page.json();
        for entry in page["doctors"].as_array().into_iter().flatten() {
            if let Some(id) = entry["doctor_id"].as_str() {
                listed.insert(id.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(listed),
        }
    }
}

/// Waits until the directory lists every approved doctor; returns whether it did
/// within [`DIRECTORY_WAIT`].
async fn wait_for_directory(seeder: &Seeder, session: &Session, expected: &HashSet<&str>) -> bool {
    let started = Instant::now();
    loop {
        let Ok(listed) = list_directory(seeder, session).await else {
            return false;
        };
        let missing = expected.iter().filter(|id| !listed.contains(**id)).count();
        if missing == 0 {
            return true;
        }
        if started.elapsed() > DIRECTORY_WAIT {
            seeder.progress.note(&format!(
                "{missing} approved doctors were still missing from the directory after {} s",
                DIRECTORY_WAIT.as_secs()
            ));
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Comparison of the directory with the seeded doctors' final statuses.
#[derive(Debug, Clone, Default)]
pub struct DirectoryCheck {
    /// Seeded doctors that are verified and not suspended.
    pub expected: usize,
    /// Of those, the ones the directory lists.
    pub listed: usize,
    /// Seeded doctors listed although suspended, rejected or not reviewed.
    pub listed_unexpectedly: usize,
}

impl DirectoryCheck {
    pub fn matches(&self) -> bool {
        self.listed == self.expected && self.listed_unexpectedly == 0
    }
}

/// Compares the directory with the final statuses, waiting up to [`DIRECTORY_WAIT`] for
/// the read model to catch up with the last suspensions. Returns `None` when the
/// directory could not be listed.
pub async fn check_directory(
    seeder: &Seeder,
    session: &Session,
    statuses: &[(Option<String>, DoctorStatus)],
) -> Option<DirectoryCheck> {
    let started = Instant::now();
    loop {
        let mut check = DirectoryCheck::default();
        let listed = list_directory(seeder, session).await.ok()?;
        for (id, status) in statuses {
            let Some(id) = id else { continue };
            let is_listed = listed.contains(id);
            if *status == DoctorStatus::Verified {
                check.expected += 1;
                check.listed += usize::from(is_listed);
            } else {
                check.listed_unexpectedly += usize::from(is_listed);
            }
        }
        if check.matches() || started.elapsed() > DIRECTORY_WAIT {
            return Some(check);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
