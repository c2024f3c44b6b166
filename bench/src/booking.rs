//! Booking throughput: book + cancel pairs per second through the command API, closed
//! loop, against a raw PostgreSQL baseline run by `pgbench` on the same database in the
//! same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use medflow_domain::values::AccountId;
use serde_json::{json, Value};

use crate::load::{error_chain, Failures};
use crate::seed::{book, slot_starts, Booking, Seeded};

/// Bookings of the throughput and lag runs use slots from this many days ahead on,
/// after the seeded appointments, which take the first four weeks.
pub const FREE_DAYS_FROM: i64 = 32;

pub struct ThroughputReport {
    pub workers: usize,
    pub seconds: f64,
    pub pairs: u64,
    pub failures: Failures,
    pub baseline_pairs_per_second: f64,
    pub pgbench_command: String,
}

/// Target ratio of book + cancel pairs per second to pgbench's.
const TARGET_RATIO: f64 = 0.5;

impl ThroughputReport {
    pub fn targets(&self) -> Vec<crate::report::TargetRow> {
        let api = self.pairs as f64 / self.seconds;
        let ratio = api / self.baseline_pairs_per_second;
        vec![crate::report::TargetRow::new(
            format!("book + cancel ≥ {TARGET_RATIO} × pgbench of the same writes"),
            format!(
                "{ratio:.3} ({api:.1} vs {:.1} pairs/s), {} failed",
                self.baseline_pairs_per_second,
                self.failures.total()
            ),
            ratio >= TARGET_RATIO && self.failures.total() == 0,
        )]
    }

    pub fn lines(&self) -> String {
        let api = self.pairs as f64 / self.seconds;
        let mut text = format!(
            "book + cancel through the command API: {} pairs in {:.0} s with {} workers = {api:.1} pairs/s, {} failed requests\n\
             raw PostgreSQL baseline (pgbench, same pair as two transactions): {:.1} pairs/s\n\
             ratio: {:.3}\n\
             pgbench command: {}",
            self.pairs,
            self.seconds,
            self.workers,
            self.failures.total(),
            self.baseline_pairs_per_second,
            api / self.baseline_pairs_per_second,
            self.pgbench_command,
        );
        for line in self.failures.lines() {
            text.push('\n');
            text.push_str(&line);
        }
        text
    }
}

/// A doctor and a patient whose bookings rarely meet anyone else's.
pub struct Lane {
    pub doctor: AccountId,
    pub token: String,
    pub slots: Vec<String>,
    pub http: reqwest::Client,
}

/// Builds one lane per doctor in `doctors`, each with a new patient session and the
/// doctor's free slots from `FREE_DAYS_FROM` days ahead.
pub async fn lanes(seeded: &Seeded, doctors: &[AccountId]) -> anyhow::Result<Vec<Lane>> {
    let from = Utc::now() + TimeDelta::days(FREE_DAYS_FROM);
    let mut lanes = Vec::with_capacity(doctors.len());
    for doctor in doctors {
        let slots = slot_starts(&seeded.api, seeded.token(0), *doctor, from, 14).await?;
        anyhow::ensure!(
            slots.len() >= 4,
            "doctor {doctor} has only {} free slots",
            slots.len()
        );
        lanes.push(Lane {
            doctor: *doctor,
            token: seeded.fixtures.patient().await.1,
            slots,
            http: reqwest::Client::builder()
                .http1_only()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?,
        });
    }
    Ok(lanes)
}

/// Cancels an appointment as its patient; returns the new sequence.
pub async fn cancel(
    http: &reqwest::Client,
    command_url: &str,
    token: &str,
    appointment_id: &str,
) -> anyhow::Result<u64> {
    let response = http
        .post(format!(
            "{command_url}/appointments/{appointment_id}/cancellation"
        ))
        .bearer_auth(token)
        .json(&json!({ "reason": "Benchmark cancellation to free the slot again." }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(
        status.as_u16() == 202,
        "cancelling {appointment_id} returned {status}: {body}"
    );
    body["sequence"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("202 without sequence: {body}"))
}

/// Runs `workers` closed-loop workers, each booking and cancelling with its own doctor
/// and patient, for a warm-up of a fifth of `duration` and then `duration`; counts the
/// pairs whose cancellation response arrived inside the measured window. Then runs the
/// pgbench baseline for the same time with as many clients.
pub async fn run(
    seeded: &Seeded,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<ThroughputReport> {
    anyhow::ensure!(
        seeded.doctors.len() >= workers,
        "booking-throughput needs at least {workers} doctors (one per worker)"
    );
    let doctors = &seeded.doctors[seeded.doctors.len() - workers..];
    let lanes = lanes(seeded, doctors).await?;
    let warm_up = duration / 5;
    let started = Instant::now();
    let measure_from = started + warm_up;
    let measure_until = measure_from + duration;
    let pairs = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Failures::default()));
    eprintln!(
        "booking throughput: {workers} workers for {:.0} s of warm-up and {:.0} s measured",
        warm_up.as_secs_f64(),
        duration.as_secs_f64()
    );
    let mut tasks = Vec::new();
    for lane in lanes {
        let command_url = seeded.api.command.clone();
        let pairs = Arc::clone(&pairs);
        let failures = Arc::clone(&failures);
        tasks.push(tokio::spawn(async move {
            let mut next_slot = 0;
            while Instant::now() < measure_until {
                let start = &lane.slots[next_slot % lane.slots.len()];
                next_slot += 1;
                let booked = book(&lane.http, &command_url, &lane.token, lane.doctor, start).await;
                let appointment_id = match booked {
                    Ok(Booking::Booked { appointment_id, .. }) => appointment_id,
                    Ok(Booking::SlotTaken) => {
                        failures
                            .lock()
                            .unwrap()
                            .record("booking: 409 slot-taken".into());
                        continue;
                    }
                    Ok(Booking::PatientOverlap) => {
                        failures
                            .lock()
                            .unwrap()
                            .record("booking: 409 patient-overlap".into());
                        continue;
                    }
                    Ok(Booking::SlotUnavailable) => {
                        failures
                            .lock()
                            .unwrap()
                            .record("booking: 422 slot-unavailable".into());
                        continue;
                    }
                    Err(error) => {
                        failures
                            .lock()
                            .unwrap()
                            .record(format!("booking: {error:#}"));
                        continue;
                    }
                };
                let cancelled =
                    cancel(&lane.http, &command_url, &lane.token, &appointment_id).await;
                let answered = Instant::now();
                match cancelled {
                    Ok(_) if answered >= measure_from && answered < measure_until => {
                        pairs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        failures
                            .lock()
                            .unwrap()
                            .record(format!("cancellation: {error:#}"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let pairs = pairs.load(Ordering::Relaxed);
    let failures = std::mem::take(&mut *failures.lock().unwrap());

    let (baseline, command) = pgbench_baseline(seeded, workers, duration).await?;
    Ok(ThroughputReport {
        workers,
        seconds: duration.as_secs_f64(),
        pairs,
        failures,
        baseline_pairs_per_second: baseline,
        pgbench_command: command,
    })
}

/// Runs the raw PostgreSQL baseline: per pair, one transaction inserting an event row
/// and a reservation row, and one inserting an event row and deleting the reservation,
/// into scratch copies of `events` and `appointment_reservations` (same columns,
/// indexes and exclusion constraints). The event payloads are copies of real booking and
/// cancellation events of this run. Returns pairs per second and the command line.
async fn pgbench_baseline(
    seeded: &Seeded,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(f64, String)> {
    let owner = seeded.env.owner_client().await;
    owner
        .batch_execute(
            "DROP TABLE IF EXISTS bench_events, bench_reservations;
             CREATE TABLE bench_events (LIKE events INCLUDING ALL);
             -- LIKE copies the NOT NULL of the hash column but not the trigger that
             -- fills it; the raw baseline inserts rows without it.
             ALTER TABLE bench_events ALTER COLUMN hash DROP NOT NULL;
             CREATE TABLE bench_reservations (LIKE appointment_reservations INCLUDING ALL);",
        )
        .await?;
    let sample = |event_type: &'static str| {
        let owner = &owner;
        async move {
            let row = owner
                .query_one(
                    "SELECT event_version, payload::text, metadata::text FROM events
                     WHERE aggregate_type = 'appointment' AND event_type = $1
                     ORDER BY global_position DESC LIMIT 1",
                    &[&event_type],
                )
                .await
                .map_err(|error| {
                    anyhow::anyhow!("no {event_type} event to copy for pgbench: {error}")
                })?;
            let literal = |text: String| format!("'{}'", text.replace('\'', "''"));
            Ok::<_, anyhow::Error>([
                literal(row.get(0)),
                literal(row.get(1)),
                literal(row.get(2)),
            ])
        }
    };
    let [booked_version, booked_payload, booked_metadata] = sample("AppointmentBooked").await?;
    let [cancelled_version, cancelled_payload, cancelled_metadata] =
        sample("AppointmentCancelled").await?;

    // pgbench replaces `:name` only for variables it defines (`pair`, `client_id`), and in
    // the default simple protocol leaves every other colon of the JSON literals alone.
    let script = format!(
        "\\set pair random(1, 9000000000000000000)
BEGIN;
INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
  VALUES ('appointment', md5(:client_id || '-' || :pair)::uuid::text, 1, 'AppointmentBooked', {booked_version}, {booked_payload}, {booked_metadata});
INSERT INTO bench_reservations (appointment_id, doctor_id, patient_id, during)
  VALUES (md5(:client_id || '-' || :pair)::uuid, md5('doctor-' || :client_id)::uuid, md5('patient-' || :client_id)::uuid,
          tstzrange('2030-01-07 09:00+00', '2030-01-07 09:30+00'));
COMMIT;
BEGIN;
INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
  VALUES ('appointment', md5(:client_id || '-' || :pair)::uuid::text, 2, 'AppointmentCancelled', {cancelled_version}, {cancelled_payload}, {cancelled_metadata});
DELETE FROM bench_reservations WHERE appointment_id = md5(:client_id || '-' || :pair)::uuid;
COMMIT;
",
    );
    let path = std::env::temp_dir().join(format!("medflow-bench-{}.sql", seeded.env.database));
    std::fs::write(&path, &script)?;
    let arguments = vec![
        "-n".to_owned(),
        "-c".to_owned(),
        clients.to_string(),
        "-j".to_owned(),
        "2".to_owned(),
        "-T".to_owned(),
        duration.as_secs().to_string(),
        "-f".to_owned(),
        path.display().to_string(),
        "-h".to_owned(),
        "127.0.0.1".to_owned(),
        "-U".to_owned(),
        "medflow_owner".to_owned(),
        seeded.env.database.clone(),
    ];
    let command = format!("pgbench {}", arguments.join(" "));
    eprintln!("running {command}");
    let output = tokio::process::Command::new("pgbench")
        .args(&arguments)
        .output()
        .await
        .map_err(|error| anyhow::anyhow!("failed to run pgbench: {}", error_chain(&error)))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed with {}: {stderr}{stdout}",
        output.status
    );
    let (rows,): (i64,) = {
        let row = owner
            .query_one("SELECT count(*) FROM bench_events", &[])
            .await?;
        (row.get(0),)
    };
    eprintln!("{stdout}pgbench wrote {rows} event rows");
    let _ = std::fs::remove_file(&path);
    // The copies are not needed any more, and vacuuming them would load the scenarios
    // that follow.
    owner
        .batch_execute("DROP TABLE bench_events, bench_reservations")
        .await?;
    // pgbench counts one script run (here one pair) as one transaction in its tps line.
    let tps = stdout
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line["tps = ".len()..].split_whitespace().next())
        .and_then(|value| value.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps line in pgbench output: {stdout}"))?;
    Ok((tps, command))
}
