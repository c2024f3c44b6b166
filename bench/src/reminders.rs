//! Reminder burst: `count` reminders fall due within the same minute and the reminder
//! service, running in this process against the stack's SMTP catcher, sends them all.
//! The schedule rows are written straight into the `reminders` table, because 10 000
//! appointments starting in the same minute would need 10 000 doctors. So the run
//! measures the sender: claiming, opening the patient's sealed address, the SMTP
//! hand-off, the in-app notification and the commit. Send delay is `sent_at - due_at`
//! as the service records it.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use medflow_infra::clock;
use medflow_reminder_service::schedule::message_id;
use medflow_tests::api::unique_email;
use uuid::Uuid;

use crate::seed::Seeded;

/// Offset of the burst's reminders: the 15-minute one, the last before the start.
const OFFSET_MINUTES: i32 = 15;
/// Time from the insert until the first reminder falls due, so that the service is
/// idle and polling when the burst begins.
const LEAD: TimeDelta = TimeDelta::seconds(10);
/// The burst's due times spread evenly over this window.
const DUE_WINDOW_MS: i64 = 60_000;
/// The run gives up waiting this long after the last due time.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

pub struct ReminderReport {
    pub count: usize,
    pub patients: usize,
    pub workers: usize,
    pub sent: i64,
    pub within_minute: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub drained_after: Duration,
}

/// Target: this many reminders due within one minute, each sent within 60 s of its
/// due time.
const TARGET_COUNT: usize = 10_000;

impl ReminderReport {
    pub fn targets(&self) -> Vec<crate::report::TargetRow> {
        vec![crate::report::TargetRow::new(
            format!("{TARGET_COUNT} reminders due in one minute, all sent within 60 s of their due time"),
            format!(
                "{} of {} within 60 s; p99 delay {:.2} s",
                self.within_minute,
                self.count,
                self.p99_ms / 1000.0
            ),
            self.count >= TARGET_COUNT && self.within_minute == self.count as i64,
        )]
    }

    pub fn lines(&self) -> String {
        format!(
            "reminder burst: {} reminders due within one minute for {} patients, {} sender workers: \
             {} sent, {} within 60 s of their due time; send delay p50 {:.0} ms, p99 {:.0} ms, \
             max {:.0} ms; last one sent {:.1} s after the first fell due",
            self.count,
            self.patients,
            self.workers,
            self.sent,
            self.within_minute,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.drained_after.as_secs_f64(),
        )
    }
}

/// Registers `patients` patients through the API, writes `count` pending reminders for
/// them due within one minute, starts a reminder service with `workers` senders and
/// waits until every reminder is sent.
pub async fn run(
    seeded: &Seeded,
    count: usize,
    patients: usize,
    workers: usize,
) -> anyhow::Result<ReminderReport> {
    let patient_ids = register_patients(seeded, patients.max(1)).await?;
    let doctor = *seeded
        .doctors
        .first()
        .ok_or_else(|| anyhow::anyhow!("the reminder burst needs at least one doctor"))?;

    let owner = seeded.env.owner_client().await;
    let first_due = Utc::now() + LEAD;
    let mut appointments = Vec::with_capacity(count);
    let mut recipients = Vec::with_capacity(count);
    let mut due = Vec::with_capacity(count);
    let mut starts = Vec::with_capacity(count);
    let mut message_ids = Vec::with_capacity(count);
    for number in 0..count {
        let appointment = Uuid::new_v4();
        let due_at = first_due
            + TimeDelta::milliseconds(number as i64 * DUE_WINDOW_MS / count.max(1) as i64);
        appointments.push(appointment);
        recipients.push(patient_ids[number % patient_ids.len()]);
        due.push(due_at);
        starts.push(due_at + TimeDelta::minutes(OFFSET_MINUTES.into()));
        message_ids.push(message_id(appointment, 1, OFFSET_MINUTES));
    }
    let now = Utc::now();
    owner
        .execute(
            "INSERT INTO reminders (appointment_id, schedule_sequence, offset_minutes, patient_id,
                 doctor_id, appointment_start, doctor_time_zone, due_at, status, next_attempt_at,
                 message_id, created_at, updated_at)
             SELECT appointment, 1, $6, patient, $7, start, 'Europe/Berlin', due, 'pending', due,
                    message, $8, $8
             FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::text[])
                  AS burst (appointment, patient, due, start, message)",
            &[
                &appointments,
                &recipients,
                &due,
                &starts,
                &message_ids,
                &OFFSET_MINUTES,
                &doctor.0,
                &now,
            ],
        )
        .await?;
    eprintln!(
        "reminder burst: {count} reminders due from {first_due} over {} s",
        DUE_WINDOW_MS / 1000
    );

    let mut settings = seeded.env.reminder_settings();
    settings.workers = workers;
    // With other scenarios on the same database the service also schedules the seeded
    // appointments' reminders, which are days ahead; only the burst's rows are counted.
    let service = seeded
        .env
        .start_reminders_with(settings, clock::system_clock());
    let last_due = first_due + TimeDelta::milliseconds(DUE_WINDOW_MS);
    let deadline =
        Instant::now() + (last_due - Utc::now()).to_std().unwrap_or_default() + GIVE_UP_AFTER;
    loop {
        let unsent: i64 = owner
            .query_one(
                "SELECT count(*) FROM reminders
                 WHERE status = 'pending' AND appointment_id = ANY($1)",
                &[&appointments],
            )
            .await?
            .get(0);
        if unsent == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{unsent} reminders still pending {} s after the last due time",
            GIVE_UP_AFTER.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    service.cancel();

    let row = owner
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'sent'),
                    count(*) FILTER (WHERE status = 'sent' AND sent_at - due_at <= interval '60 seconds'),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)),
                    max(extract(epoch FROM sent_at - due_at))::float8,
                    extract(epoch FROM max(sent_at) - min(due_at))::float8
             FROM reminders WHERE appointment_id = ANY($1)",
            &[&appointments],
        )
        .await?;
    let seconds = |index: usize| -> f64 { row.get::<_, Option<f64>>(index).unwrap_or(f64::NAN) };
    let report = ReminderReport {
        count,
        patients: patient_ids.len(),
        workers,
        sent: row.get(0),
        within_minute: row.get(1),
        p50_ms: seconds(2) * 1000.0,
        p99_ms: seconds(3) * 1000.0,
        max_ms: seconds(4) * 1000.0,
        drained_after: Duration::from_secs_f64(seconds(5).max(0.0)),
    };
    // The tests list the catcher's messages; thousands of burst messages would slow them.
    if let Err(error) = medflow_tests::mail::delete_all().await {
        eprintln!("clearing the mail catcher failed: {error:#}");
    }
    Ok(report)
}

/// Registers patients through the command API and waits until the account directory,
/// where the sender reads addresses, has them all.
async fn register_patients(seeded: &Seeded, patients: usize) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(patients);
    for number in 0..patients {
        let email = unique_email(&format!("burst.patient{number}"));
        let (id, _) = seeded
            .api
            .register_ok("patient", &email, &format!("Burst Patient {number}"))
            .await;
        ids.push(Uuid::parse_str(&id)?);
    }
    let owner = seeded.env.owner_client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let known: i64 = owner
            .query_one(
                "SELECT count(*) FROM account_directory WHERE account_id = ANY($1)",
                &[&ids],
            )
            .await?
            .get(0);
        if known == ids.len() as i64 {
            return Ok(ids);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {known} of {} patients reached the account directory",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
