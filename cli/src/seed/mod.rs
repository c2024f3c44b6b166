//! `medflow seed`: fills a running platform with doctors, patients and appointments
//! through its public HTTP APIs only, the way clients would, and reports request counts,
//! errors, latencies and what the platform recorded.
//!
//! The phases run one after another. Doctors onboard (profile, weekly windows, time off,
//! license PDF through a presigned upload, submission) and the admin reviews them.
//! Patients register and log in, groups of patients race for the same slots, and
//! patients book, then cancel or reschedule some appointments. Last, the admin suspends
//! a few doctors, and the run checks that the directory lists exactly the seeded doctors
//! that are verified and not suspended.

mod bookings;
mod client;
mod dataset;
mod doctors;
mod patients;
mod platform;
mod progress;
mod report;

use std::time::{Duration, Instant};

use crate::platform::PlatformArgs;
use anyhow::Context;
use chrono::{DateTime, Utc};

pub use bookings::{BookingOutcome, ContestOutcome, DirectoryCheck};
pub use client::{Endpoint, EndpointSummary, FailureSample, SEEDED_PASSWORD};
pub use dataset::WEEKDAYS;
pub use doctors::DoctorStatus;
pub use platform::PlatformNumbers;
pub use progress::{PhaseTiming, ProgressMode};
pub use report::SeedReport;

use client::Client;
use progress::Progress;

/// Settings of a seeding run: the platform, its admin and the amounts to seed.
/// Not `Debug`, because it contains the admin's password.
#[derive(Clone, clap::Args)]
pub struct SeedSettings {
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Doctors to onboard. About 85 % are approved (a few of them suspended later),
    /// 5 % rejected and 10 % left waiting for review.
    #[arg(long, default_value_t = 200)]
    pub doctors: usize,
    /// Patients to register and log in.
    #[arg(long, default_value_t = 2000)]
    pub patients: usize,
    /// Appointments to book, by patients picked at random; defaults to one per patient.
    #[arg(long)]
    pub bookings: Option<usize>,
    /// Slots that several patients request at the same moment; exactly one request per
    /// slot must succeed.
    #[arg(long, default_value_t = 20)]
    pub contested_slots: usize,
    /// Patients racing for each contested slot.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=32))]
    pub contenders: u16,
    /// Weeks ahead over which appointments and time off are spread. Must stay within
    /// the platform's booking horizon (MEDFLOW_BOOKING_HORIZON_DAYS, default 60 days).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub weeks: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Seed of the generated data; the same seed gives the same names, profiles and
    /// choices, with new e-mail addresses. Random when omitted.
    #[arg(long)]
    pub random_seed: Option<u64>,
    /// Prometheus endpoint of the relay, read for events published and relay backlog.
    #[arg(
        long,
        env = "MEDFLOW_RELAY_METRICS_URL",
        default_value = "http://127.0.0.1:8082/metrics"
    )]
    pub relay_metrics_url: Option<String>,
    /// Prometheus endpoint of the projectors, read for projection lag.
    #[arg(
        long,
        env = "MEDFLOW_PROJECTOR_METRICS_URL",
        default_value = "http://127.0.0.1:8083/metrics"
    )]
    pub projector_metrics_url: Option<String>,
    /// Progress display: redrawn lines on a terminal (auto), plain lines or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// State shared by the phases of one run.
struct Seeder {
    client: Client,
    settings: SeedSettings,
    /// Short id in every e-mail address and license number of this run.
    run: String,
    random_seed: u64,
    /// Start of the run; time off and booking ranges count from here.
    now: DateTime<Utc>,
    progress: Progress,
}

impl Seeder {
    fn concurrency(&self) -> usize {
        usize::from(self.settings.concurrency).max(1)
    }
}

/// Seeds the platform at the settings' URLs and returns the report, also when requests
/// failed. Returns an error only when a service is not ready or the admin cannot log in.
pub async fn run(settings: SeedSettings) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let progress = Progress::new(settings.progress);
    let client = Client::new(
        &settings.platform.command_url,
        usize::from(settings.concurrency),
        progress.clone(),
    )?;
    for base in [&settings.platform.command_url, &settings.platform.query_url] {
        crate::http::check_ready(client.http(), base).await?;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let random_seed = settings
        .random_seed
        .unwrap_or_else(|| u64::from_str_radix(&run, 16).expect("hex run id"));
    let seeder = Seeder {
        client,
        settings,
        run,
        random_seed,
        now: Utc::now(),
        progress,
    };
    if seeder.settings.progress != ProgressMode::None {
        println!(
            "seeding run {} (random seed {}): {} doctors, {} patients, concurrency {}",
            seeder.run,
            seeder.random_seed,
            seeder.settings.doctors,
            seeder.settings.patients,
            seeder.settings.concurrency
        );
    }
    let relay_before = platform::relay_numbers(&seeder).await;

    let admin = seeder
        .client
        .login(
            &seeder.settings.platform.admin_email,
            &seeder.settings.platform.admin_password,
        )
        .await
        .ok()
        .context("the admin could not log in; check --admin-email and MEDFLOW_ADMIN_PASSWORD")?;

    let mut phases = Vec::new();
    let (doctors, timing) = doctors::onboard_all(&seeder).await;
    phases.push(timing);
    let (review, timing) = doctors::review_all(&seeder, &admin, &doctors).await;
    phases.push(timing);
    let (patients, timing) = patients::register_all(&seeder).await;
    phases.push(timing);

    let bookable = doctors::bookable(&doctors, &review);
    let booking = bookings::run_all(&seeder, &doctors, &bookable, &patients).await;
    phases.extend(booking.phases.iter().cloned());

    let (suspended, timing) = doctors::suspend_some(&seeder, &admin, &doctors, &review).await;
    phases.push(timing);
    let statuses = doctors::final_statuses(&seeder, &doctors, &review, &suspended);
    let directory = match patients.first() {
        Some(patient) => bookings::check_directory(&seeder, &patient.session, &statuses).await,
        None => None,
    };

    let events_written = seeder.client.events_written();
    let platform = platform::settle(&seeder, relay_before, events_written).await;
    Ok(report::build(
        &seeder,
        started.elapsed(),
        phases,
        statuses,
        patients.len(),
        booking,
        review.license_mismatches,
        directory,
        platform,
    ))
}

/// Runs `task` for each item with at most `limit` running at once, advancing `phase`
/// as each finishes; returns the results in completion order.
async fn for_each_bounded<I, T, F, Fut>(
    items: I,
    limit: usize,
    phase: &progress::Phase,
    task: F,
) -> Vec<T>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures::StreamExt;
    futures::stream::iter(items)
        .map(task)
        .buffer_unordered(limit.max(1))
        .inspect(|_| phase.advance())
        .collect()
        .await
}

/// Interval between polls of a read model that is catching up.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
