//! Seeds a fresh database of the local stack: verified doctors through the command bus,
//! patient sessions through the session store, and booked appointments through the real
//! command API (`POST /appointments`). Every read model is filled by the relay, Kafka and
//! the projectors, which run in this process together with both APIs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use medflow_domain::availability::{DoctorTimeZone, RawWindow, WeeklyAvailability};
use medflow_domain::doctor::{
    DoctorCommand, DoctorProfile, Language, LicenseDocument, ProfileDetails, Specialty, SPECIALTIES,
};
use medflow_domain::values::AccountId;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_infra::event_store::{CommandBus, EventMetadata};
use medflow_tests::api::Api;
use medflow_tests::fixtures::Fixtures;
use medflow_tests::TestEnv;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::broker::PrivateBroker;

/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// Slots closer than this to the seeding start are skipped, so that no chosen slot
/// falls inside the one-hour minimum notice before it is booked.
const SEED_NOTICE: TimeDelta = TimeDelta::hours(3);
/// Bookings of one doctor are drawn from the slots of this many days.
const SEED_DAYS: i64 = 28;

pub struct Seeded {
    /// Owns the benchmark's database and services; dropping it removes them.
    pub env: TestEnv,
    /// The run's own broker, if it has one; declared after `env` so that the services
    /// stop before the broker does.
    _broker: Option<PrivateBroker>,
    pub api: Api,
    pub fixtures: Fixtures,
    /// Patient session tokens that the query load rotates through.
    pub tokens: Vec<String>,
    pub doctors: Vec<AccountId>,
}

impl Seeded {
    /// Returns the session token for request `number`.
    pub fn token(&self, number: u64) -> &str {
        &self.tokens[number as usize % self.tokens.len()]
    }
}

const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Europe/London",
];

/// Starts the spine on a fresh database and seeds `doctors` verified doctors and
/// `sessions` patient sessions. With `broker_storage` set, the run starts a private
/// broker with that storage engine; otherwise it uses the stack's broker.
pub async fn seed(
    doctors: usize,
    sessions: usize,
    broker_storage: Option<&str>,
) -> anyhow::Result<Seeded> {
    let broker = match broker_storage {
        Some(storage) => Some(PrivateBroker::start(storage).await?),
        None => None,
    };
    let mut env = TestEnv::new().await;
    if let Some(broker) = &broker {
        env = env.with_brokers(&broker.brokers());
    }
    let api = env.start_spine().await;
    eprintln!("database {}, broker {}", env.database, env.brokers);
    let fixtures = Fixtures::new(&env).await;
    let doctor_ids = seed_doctors(&env, doctors).await?;
    let mut tokens = Vec::with_capacity(sessions);
    for _ in 0..sessions.max(1) {
        tokens.push(fixtures.patient().await.1);
    }
    Ok(Seeded {
        env,
        _broker: broker,
        api,
        fixtures,
        tokens,
        doctors: doctor_ids,
    })
}

async fn seed_doctors(env: &TestEnv, count: usize) -> anyhow::Result<Vec<AccountId>> {
    let url = SecretString::from(env.app_url());
    let keys = KeyRing::new(
        medflow_infra::db::pg_pool(&url, 8)?,
        MasterKeys::parse(&SecretString::from(env.master_keys.clone()))
            .map_err(anyhow::Error::msg)?,
    );
    let index = BlindIndex::from_base64(&SecretString::from(env.index_key.clone()))
        .map_err(anyhow::Error::msg)?;
    let bus: CommandBus<DoctorProfile> =
        CommandBus::new(medflow_infra::db::sqlx_pool(&url, 8).await?, ());
    let windows: Vec<RawWindow> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .flat_map(|day| {
            [
                RawWindow::new(day, "08:00", "12:00"),
                RawWindow::new(day, "13:00", "18:00"),
            ]
        })
        .collect();
    let weekly = WeeklyAvailability::parse("windows", &windows).map_err(anyhow::Error::msg)?;

    eprintln!("seeding {count} verified doctors");
    let started = Instant::now();
    let doctors: Vec<AccountId> = futures::stream::iter(0..count)
        .map(|number| seed_doctor(&keys, &index, &bus, &weekly, number))
        .buffered(SEED_CONCURRENCY)
        .try_collect()
        .await?;

    let client = env.owner_client().await;
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM doctor_profiles WHERE status = 'verified'",
                &[],
            )
            .await?;
        let verified: i64 = row.get(0);
        if verified == count as i64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the doctors projection showed {verified} of {count} verified doctors after 10 minutes; \
             look for warnings from the relay and the projectors above"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{count} verified doctors in the read model after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(doctors)
}

async fn seed_doctor(
    keys: &KeyRing,
    index: &BlindIndex,
    bus: &CommandBus<DoctorProfile>,
    weekly: &WeeklyAvailability,
    number: usize,
) -> anyhow::Result<AccountId> {
    let doctor = AccountId(Uuid::new_v4());
    let id = doctor.to_string();
    let name = format!("Dr. Bench Doctor{number}");
    let license = format!("BENCH-{number}");
    let details = ProfileDetails {
        display_name: keys
            .seal(doctor.0, "doctor_display_name", name.as_bytes())
            .await?,
        name_tokens: index.name_tokens(&name),
        specialty: Specialty::parse("specialty", SPECIALTIES[number % SPECIALTIES.len()])
            .map_err(anyhow::Error::msg)?,
        license_number: keys
            .seal(doctor.0, "license_number", license.as_bytes())
            .await?,
        license_fingerprint: index.license_fingerprint(&license),
        issuing_authority: "Bench Medical Council".into(),
        biography: keys
            .seal(doctor.0, "biography", b"Seeded for the benchmark.")
            .await?,
        time_zone: DoctorTimeZone::parse("time_zone", ZONES[number % ZONES.len()])
            .map_err(anyhow::Error::msg)?,
        languages: vec![Language::parse("languages", "en").map_err(anyhow::Error::msg)?],
    };
    let document = LicenseDocument {
        document_id: Uuid::new_v4(),
        object_key: format!("licenses/{id}/bench"),
        content_type: "application/pdf".into(),
        size: 1,
    };
    let admin = AccountId(Uuid::from_u128(1));
    for command in [
        DoctorCommand::UpdateProfile { doctor, details },
        DoctorCommand::SetWeeklyAvailability {
            weekly: weekly.clone(),
        },
        DoctorCommand::AttachLicenseDocument { document },
        DoctorCommand::SubmitForVerification,
        DoctorCommand::Approve { by: admin },
    ] {
        let metadata = EventMetadata {
            actor_id: None,
            actor_role: None,
            request_id: "bench-seed".into(),
            session_id: None,
        };
        bus.execute(&id, command, metadata)
            .await
            .map_err(|error| anyhow::anyhow!("seeding doctor {id} failed: {error}"))?;
    }
    Ok(doctor)
}

/// Fetches a doctor's slot starts over `[from, from + days)` as the slot list returns
/// them (RFC 3339 strings).
pub async fn slot_starts(
    api: &Api,
    token: &str,
    doctor: AccountId,
    from: DateTime<Utc>,
    days: i64,
) -> anyhow::Result<Vec<String>> {
    let format = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!(
        "/doctors/{doctor}/slots?from={}&to={}",
        format(from),
        format(from + TimeDelta::days(days))
    );
    let response = api
        .http
        .get(format!("{}{path}", api.query))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "GET {path} returned {status}: {body}");
    Ok(body["slots"]
        .as_array()
        .map(|slots| {
            slots
                .iter()
                .filter_map(|slot| slot["start"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Outcome of one `POST /appointments`.
pub enum Booking {
    Booked {
        appointment_id: String,
        sequence: u64,
    },
    SlotTaken,
    PatientOverlap,
    SlotUnavailable,
}

/// Books `start` with `doctor` for the patient of `token`. Errors on any status other
/// than 201, 409 and a 422 `slot-unavailable`.
pub async fn book(
    http: &reqwest::Client,
    command_url: &str,
    token: &str,
    doctor: AccountId,
    start: &str,
) -> anyhow::Result<Booking> {
    let response = http
        .post(format!("{command_url}/appointments"))
        .bearer_auth(token)
        .json(&json!({ "doctor_id": doctor.to_string(), "start": start }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    let problem = body["type"].as_str().unwrap_or_default();
    match status {
        201 => Ok(Booking::Booked {
            appointment_id: body["appointment_id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("201 without appointment_id: {body}"))?
                .to_owned(),
            sequence: body["sequence"].as_u64().unwrap_or(1),
        }),
        409 if problem.ends_with(":patient-overlap") => Ok(Booking::PatientOverlap),
        409 => Ok(Booking::SlotTaken),
        422 if problem.ends_with(":slot-unavailable") => Ok(Booking::SlotUnavailable),
        _ => anyhow::bail!("POST /appointments returned {status}: {body}"),
    }
}

/// Vacuums and analyzes the run's database, so that a scenario does not pay for the
/// dead rows and statistics left by the one before it (pgbench vacuums before its runs
/// for the same reason).
pub async fn settle(seeded: &Seeded) -> anyhow::Result<()> {
    let started = Instant::now();
    seeded
        .env
        .owner_client()
        .await
        .batch_execute("VACUUM (ANALYZE)")
        .await?;
    eprintln!(
        "vacuumed the database in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Books `total` appointments spread evenly over the doctors through the command API,
/// then waits until the `appointments` read model shows all of them. Each doctor gets
/// its first two free slots (so the directory's next free slot has to skip bookings)
/// and random others from the next four weeks. Patients come from `Fixtures::patient`,
/// about ten appointments each; a 409 moves the booking to another patient or slot.
pub async fn seed_appointments(seeded: &Seeded, total: usize) -> anyhow::Result<()> {
    if total == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let doctors = &seeded.doctors;
    let per_doctor = total.div_ceil(doctors.len());
    let patient_count = (total / 10).max(1);
    eprintln!("creating {patient_count} patient sessions");
    let patients: Vec<String> = futures::stream::iter(0..patient_count)
        .map(|_| async { seeded.fixtures.patient().await.1 })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;

    eprintln!("booking {total} appointments through POST /appointments");
    let from = Utc::now() + SEED_NOTICE;
    let next_patient = AtomicUsize::new(0);
    let skipped = Arc::new(AtomicUsize::new(0));
    let booked: Vec<usize> = futures::stream::iter(doctors.iter().enumerate())
        .map(|(index, doctor)| {
            let wanted = per_doctor.min(total.saturating_sub(index * per_doctor));
            let patients = &patients;
            let next_patient = &next_patient;
            let skipped = Arc::clone(&skipped);
            async move {
                let mut slots =
                    slot_starts(&seeded.api, seeded.token(0), *doctor, from, SEED_DAYS).await?;
                let mut rng = rand::rngs::StdRng::seed_from_u64(index as u64);
                if slots.len() > 2 {
                    slots[2..].shuffle(&mut rng);
                }
                let mut count = 0;
                let mut slots = slots.into_iter();
                while count < wanted {
                    let Some(start) = slots.next() else {
                        anyhow::bail!(
                            "doctor {doctor} ran out of free slots after {count} bookings"
                        );
                    };
                    // A patient who already has an appointment then is replaced by the next one.
                    for _ in 0..patients.len() {
                        let patient = next_patient.fetch_add(1, Ordering::Relaxed) % patients.len();
                        let outcome = book(
                            &seeded.api.http,
                            &seeded.api.command,
                            &patients[patient],
                            *doctor,
                            &start,
                        )
                        .await?;
                        match outcome {
                            Booking::Booked { .. } => {
                                count += 1;
                                break;
                            }
                            Booking::PatientOverlap => {
                                skipped.fetch_add(1, Ordering::Relaxed);
                            }
                            Booking::SlotTaken | Booking::SlotUnavailable => {
                                skipped.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(count)
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    let booked: usize = booked.into_iter().sum();
    eprintln!(
        "{booked} appointments booked in {:.1} s ({} requests answered 409 or 422 and were retried)",
        started.elapsed().as_secs_f64(),
        skipped.load(Ordering::Relaxed)
    );

    let client = seeded.env.owner_client().await;
    let projected_since = Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM appointments WHERE status = 'booked'",
                &[],
            )
            .await?;
        let projected = row.get::<_, i64>(0);
        if projected >= booked as i64 {
            break;
        }
        anyhow::ensure!(
            projected_since.elapsed() < Duration::from_secs(600),
            "the appointments projection shows {projected} of {booked} bookings after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "appointments read model holds all {booked} bookings {:.1} s after the last one was accepted",
        projected_since.elapsed().as_secs_f64()
    );
    Ok(())
}
