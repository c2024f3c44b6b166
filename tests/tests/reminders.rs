//! The reminder service end to end: appointment events from Kafka become a durable
//! schedule, and due reminders reach the stack's SMTP catcher exactly once, on a manual
//! clock, across cancellations, reschedules, redelivery, two instances, an SMTP outage
//! and a SIGKILL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use medflow_domain::values::AccountId;
use medflow_infra::clock::ManualClock;
use medflow_infra::kafka;
use medflow_projectors::framework::group_id;
use medflow_reminder_service::schedule::ReminderSchedule;
use medflow_tests::api::{unique_email, Api};
use medflow_tests::fixtures::{every_day, Fixtures};
use medflow_tests::mail::{messages_to, wait_for_messages};
use medflow_tests::process::ServiceProcess;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

struct Office {
    env: TestEnv,
    api: Api,
    doctor: AccountId,
    clock: Arc<ManualClock>,
}

async fn office() -> Office {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let fixtures = Fixtures::new(&env).await;
    let (doctor, _, _) = fixtures
        .verified_doctor("UTC", &every_day("00:00", "24:00"))
        .await;
    Office {
        env,
        api,
        doctor,
        clock: ManualClock::starting_now(),
    }
}

/// A slot start `ahead` from now, on the half-hour grid of the test doctor.
fn slot_after(ahead: TimeDelta) -> DateTime<Utc> {
    (Utc::now() + ahead)
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap()
        + TimeDelta::minutes(30)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Office {
    /// Registers a patient who has an e-mail address; returns it with a session token.
    async fn patient(&self) -> (String, String) {
        let email = unique_email("reminder.patient");
        self.api
            .register_ok("patient", &email, "Rita Reminder")
            .await;
        let token = self.api.login_ok(&email).await.token;
        (email, token)
    }

    async fn book(&self, token: &str, start: DateTime<Utc>) -> Value {
        let response = self
            .api
            .command_post(
                token,
                "/appointments",
                json!({ "doctor_id": self.doctor.to_string(), "start": rfc3339(start) }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "booking failed: {body}");
        body
    }

    fn start_reminders(&self) -> tokio_util::sync::CancellationToken {
        self.env
            .start_reminders_with(self.env.reminder_settings(), self.clock.clone())
    }

    /// Waits until the schedule holds `count` rows in `status` for the appointment.
    async fn wait_rows(&self, appointment: &Value, status: &str, count: i64) {
        let client = self.env.owner_client().await;
        let id: uuid::Uuid = appointment["appointment_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        eventually(Duration::from_secs(30), "the reminder schedule", || async {
            let found: i64 = client
                .query_one(
                    "SELECT count(*) FROM reminders WHERE appointment_id = $1 AND status = $2",
                    &[&id, &status],
                )
                .await
                .unwrap()
                .get(0);
            (found == count).then_some(())
        })
        .await;
    }
}

fn message_id(message: &Value) -> String {
    message["headers"]["message-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn subject(message: &Value) -> &str {
    message["subject"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn three_days_ahead_sends_three_reminders_on_time() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::days(3));
    let booked = office.book(&token, start).await;
    office.start_reminders();
    office.wait_rows(&booked, "pending", 3).await;

    // Nothing before the first due time.
    office
        .clock
        .set(start - TimeDelta::hours(24) - TimeDelta::minutes(1));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(messages_to(&email).await.is_empty());

    let steps = [
        (TimeDelta::hours(24), "24 hours"),
        (TimeDelta::hours(2), "2 hours"),
        (TimeDelta::minutes(15), "15 minutes"),
    ];
    for (index, (before, lead)) in steps.iter().enumerate() {
        office.clock.set(start - *before + TimeDelta::seconds(1));
        let messages = wait_for_messages(&email, index + 1, MAIL_TIMEOUT).await;
        assert_eq!(messages.len(), index + 1);
        let latest = &messages[index];
        assert!(subject(latest).ends_with(lead), "{}", subject(latest));
        assert!(!subject(latest).to_lowercase().contains("cardiology"));
        let link = format!(
            "https://app.medflow.example/appointments/{}",
            booked["appointment_id"].as_str().unwrap()
        );
        assert!(latest["text"].as_str().unwrap().contains(&link));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    let messages = messages_to(&email).await;
    assert_eq!(messages.len(), 3);
    let mut ids: Vec<String> = messages.iter().map(message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.starts_with("<reminder.")), "{ids:?}");
    office.wait_rows(&booked, "sent", 3).await;

    // Each reminder is also an in-app notification for the patient.
    let list: Value = office
        .api
        .query_get(&token, "/notifications")
        .await
        .json()
        .await
        .unwrap();
    let reminders: Vec<&Value> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|notification| notification["kind"] == "appointment_reminder")
        .collect();
    assert_eq!(reminders.len(), 3, "{list}");
    let mut minutes: Vec<i64> = reminders
        .iter()
        .map(|notification| notification["payload"]["minutes_before"].as_i64().unwrap())
        .collect();
    minutes.sort();
    assert_eq!(minutes, [15, 120, 1440]);
    assert!(reminders
        .iter()
        .all(|notification| notification["appointment_id"] == booked["appointment_id"]));
}

#[tokio::test]
async fn booking_twenty_hours_ahead_skips_the_day_before() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::hours(20));
    let booked = office.book(&token, start).await;
    office.start_reminders();
    office.wait_rows(&booked, "skipped", 1).await;
    office.wait_rows(&booked, "pending", 2).await;

    office
        .clock
        .set(start - TimeDelta::hours(2) + TimeDelta::seconds(1));
    wait_for_messages(&email, 1, MAIL_TIMEOUT).await;
    office
        .clock
        .set(start - TimeDelta::minutes(15) + TimeDelta::seconds(1));
    let messages = wait_for_messages(&email, 2, MAIL_TIMEOUT).await;
    assert!(subject(&messages[0]).ends_with("2 hours"));
    assert!(subject(&messages[1]).ends_with("15 minutes"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(messages_to(&email).await.len(), 2);
}

#[tokio::test]
async fn cancelled_and_rescheduled_appointments_remind_the_last_time_only() {
    let office = office().await;
    let (cancelling_email, cancelling) = office.patient().await;
    let (moving_email, moving) = office.patient().await;
    let first = slot_after(TimeDelta::days(3));
    let cancelled = office.book(&cancelling, first).await;
    let response = office
        .api
        .command_post(
            &cancelling,
            &format!(
                "/appointments/{}/cancellation",
                cancelled["appointment_id"].as_str().unwrap()
            ),
            json!({ "reason": "feeling better" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let booked = office.book(&moving, first + TimeDelta::hours(1)).await;
    let id = booked["appointment_id"].as_str().unwrap().to_owned();
    let last = first + TimeDelta::hours(5);
    for start in [first + TimeDelta::hours(3), last] {
        let response = office
            .api
            .command_post(
                &moving,
                &format!("/appointments/{id}/reschedule"),
                json!({ "start": rfc3339(start) }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    office.start_reminders();
    office.wait_rows(&cancelled, "cancelled", 3).await;
    office.wait_rows(&booked, "replaced", 6).await;
    office.wait_rows(&booked, "pending", 3).await;

    // Past every due time of every version, but before the last start.
    office.clock.set(last - TimeDelta::minutes(10));
    let messages = wait_for_messages(&moving_email, 3, MAIL_TIMEOUT).await;
    let last_time = last.format("%Y-%m-%d %H:%M UTC").to_string();
    for message in &messages {
        assert!(message["text"].as_str().unwrap().contains(&last_time));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(messages_to(&moving_email).await.len(), 3);
    assert!(messages_to(&cancelling_email).await.is_empty());
}

#[tokio::test]
async fn redelivered_booking_schedules_nothing_new() {
    let office = office().await;
    let (_, token) = office.patient().await;
    let booked = office.book(&token, slot_after(TimeDelta::days(2))).await;
    office.start_reminders();
    office.wait_rows(&booked, "pending", 3).await;

    // Apply the stored booking event again, as a consumer whose offset was reset would.
    let mut client = office.env.app_client().await;
    let row = client
        .query_one(
            &format!(
                "SELECT {} FROM events WHERE aggregate_type = 'appointment' AND aggregate_id = $1 AND sequence = 1",
                medflow_infra::events::STORED_EVENT_COLUMNS
            ),
            &[&booked["appointment_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    let event = medflow_infra::events::StoredEvent::from_row(&row).unwrap();
    let schedule = ReminderSchedule {
        clock: office.clock.clone(),
    };
    let applied = medflow_projectors::framework::apply_event(&mut client, None, &schedule, &event)
        .await
        .unwrap();
    assert_eq!(applied, medflow_projectors::framework::Applied::Duplicate);
    let total: i64 = client
        .query_one("SELECT count(*) FROM reminders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 3);
}

/// Commits offset 0 on every partition of `topic` for `group`, as an operator's offset
/// reset would. Retried until the group's last member has left and the commit is taken.
async fn reset_group_to_start(env: &TestEnv, group: &str, topic: &str) {
    let settings = env.kafka_settings();
    let group = group.to_owned();
    let topic = topic.to_owned();
    eventually(Duration::from_secs(30), "an offset reset", || {
        let settings = settings.clone();
        let group = group.clone();
        let topic = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer =
                    kafka::consumer_config(&settings, &group).create().ok()?;
                let metadata = consumer
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .ok()?;
                let mut start = TopicPartitionList::new();
                for partition in metadata.topics().first()?.partitions() {
                    start
                        .add_partition_offset(&topic, partition.id(), Offset::Offset(0))
                        .ok()?;
                }
                consumer.commit(&start, CommitMode::Sync).ok()
            })
            .await
            .unwrap()
        }
    })
    .await;
}

/// Returns the group's committed offset and the end of the log, summed over partitions.
async fn committed_and_end(env: &TestEnv, group: &str, topic: &str) -> (i64, i64) {
    let settings = env.kafka_settings();
    let group = group.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka::consumer_config(&settings, &group).create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .unwrap();
        let mut partitions = TopicPartitionList::new();
        let mut end = 0;
        for partition in metadata.topics()[0].partitions() {
            partitions.add_partition(&topic, partition.id());
            end += consumer
                .fetch_watermarks(&topic, partition.id(), Duration::from_secs(5))
                .unwrap()
                .1;
        }
        let committed = consumer
            .committed_offsets(partitions, Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .map(|element| element.offset().to_raw().unwrap_or(0).max(0))
            .sum();
        (committed, end)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn consumer_offset_reset_schedules_and_sends_nothing_new() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::hours(20));
    let booked = office.book(&token, start).await;
    let service = office.start_reminders();
    office.wait_rows(&booked, "pending", 2).await;
    office
        .clock
        .set(start - TimeDelta::hours(2) + TimeDelta::seconds(1));
    wait_for_messages(&email, 1, MAIL_TIMEOUT).await;
    office.wait_rows(&booked, "pending", 1).await;

    // Stop the service, rewind its consumer group to the start of the log and restart:
    // the booking is delivered again.
    service.cancel();
    let settings = office.env.kafka_settings();
    let group = group_id(&settings, "reminders");
    let topic = kafka::topic_for(&settings, "appointment");
    reset_group_to_start(&office.env, &group, &topic).await;
    let (committed, end) = committed_and_end(&office.env, &group, &topic).await;
    assert_eq!(committed, 0, "the reset did not take");
    assert!(end > 0);
    office.start_reminders();
    eventually(
        Duration::from_secs(60),
        "the rewound group to consume again",
        || async {
            let (committed, end) = committed_and_end(&office.env, &group, &topic).await;
            (committed == end).then_some(())
        },
    )
    .await;

    let client = office.env.owner_client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM reminders", &[])
        .await
        .unwrap()
        .get(0);
    // The 24-hour reminder was skipped (due before the booking), the other two scheduled.
    assert_eq!(rows, 3, "the redelivered booking added reminders");
    office.wait_rows(&booked, "sent", 1).await;
    office
        .clock
        .set(start - TimeDelta::minutes(15) + TimeDelta::seconds(1));
    wait_for_messages(&email, 2, MAIL_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let messages = messages_to(&email).await;
    assert_eq!(messages.len(), 2, "a reminder was sent twice");
    let notifications: i64 = client
        .query_one(
            "SELECT count(*) FROM notifications WHERE kind = 'appointment_booked'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        notifications, 2,
        "one booking notification each for patient and doctor"
    );
}

#[tokio::test]
async fn two_instances_send_each_reminder_once() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let base = slot_after(TimeDelta::days(2));
    for slot in 0..8 {
        office
            .book(&token, base + TimeDelta::minutes(30 * slot))
            .await;
    }
    office.start_reminders();
    office.start_reminders();
    let client = office.env.owner_client().await;
    eventually(
        Duration::from_secs(40),
        "24 scheduled reminders",
        || async {
            let rows: i64 = client
                .query_one(
                    "SELECT count(*) FROM reminders WHERE status = 'pending'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (rows == 24).then_some(())
        },
    )
    .await;

    // Due now: the eight 24-hour reminders, and the 2-hour reminders of the four
    // appointments that start within 2 hours 16 minutes.
    office.clock.set(base - TimeDelta::minutes(16));
    let messages = wait_for_messages(&email, 12, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let messages_after = messages_to(&email).await;
    assert_eq!(messages_after.len(), 12, "{} messages", messages.len());
    let mut ids: Vec<String> = messages_after.iter().map(message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
}

/// A TCP proxy to the mail catcher that can be switched off: while it is down it closes
/// every connection at once, like an SMTP server that is not there.
async fn smtp_proxy(up: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if !up.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:1025").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn smtp_outage_delays_reminders_until_it_ends() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::days(2));
    let booked = office.book(&token, start).await;
    let up = Arc::new(AtomicBool::new(false));
    let port = smtp_proxy(up.clone()).await;
    let mut settings = office.env.reminder_settings();
    settings.smtp_url = format!("smtp://127.0.0.1:{port}");
    office
        .env
        .start_reminders_with(settings, office.clock.clone());
    office.wait_rows(&booked, "pending", 3).await;

    office
        .clock
        .set(start - TimeDelta::hours(24) + TimeDelta::seconds(1));
    let client = office.env.owner_client().await;
    let id: uuid::Uuid = booked["appointment_id"].as_str().unwrap().parse().unwrap();
    eventually(Duration::from_secs(20), "a failed attempt", || async {
        let attempts: i32 = client
            .query_one(
                "SELECT attempts FROM reminders WHERE appointment_id = $1 AND offset_minutes = 1440",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        (attempts >= 1).then_some(())
    })
    .await;
    assert!(messages_to(&email).await.is_empty());

    // The server returns; the retry falls due a minute later at most.
    up.store(true, Ordering::SeqCst);
    office.clock.advance(Duration::from_secs(61));
    wait_for_messages(&email, 1, MAIL_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(messages_to(&email).await.len(), 1);
}

#[tokio::test]
async fn reminders_still_unsent_at_the_start_are_given_up() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::days(2));
    let booked = office.book(&token, start).await;
    let up = Arc::new(AtomicBool::new(false));
    let port = smtp_proxy(up).await;
    let mut settings = office.env.reminder_settings();
    settings.smtp_url = format!("smtp://127.0.0.1:{port}");
    office
        .env
        .start_reminders_with(settings, office.clock.clone());
    office.wait_rows(&booked, "pending", 3).await;

    office.clock.set(start + TimeDelta::minutes(1));
    office.wait_rows(&booked, "failed", 3).await;
    assert!(messages_to(&email).await.is_empty());
}

#[tokio::test]
async fn sigkill_after_sending_sends_no_copy() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::days(2));
    let booked = office.book(&token, start).await;

    // The child process's clock runs 5 seconds before the first due time.
    let offset = (start - TimeDelta::hours(24) - TimeDelta::seconds(5) - Utc::now()).num_seconds();
    let mut variables = office.env.env_vars();
    variables.push(("MEDFLOW_CLOCK_OFFSET_SECS".into(), offset.to_string()));
    variables.push(("MEDFLOW_REMINDERS_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    variables.push(("MEDFLOW_REMINDER_POLL_INTERVAL_MS".into(), "50".into()));
    let mut service = ServiceProcess::spawn("medflow-reminder-service", &[], &variables);
    wait_for_messages(&email, 1, Duration::from_secs(40)).await;
    office.wait_rows(&booked, "sent", 1).await;
    service.kill9();

    let _restarted = ServiceProcess::spawn("medflow-reminder-service", &[], &variables);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(messages_to(&email).await.len(), 1);
    office.wait_rows(&booked, "sent", 1).await;
    office.wait_rows(&booked, "pending", 2).await;
}

#[tokio::test]
async fn crash_between_smtp_and_commit_resends_once() {
    let office = office().await;
    let (email, token) = office.patient().await;
    let start = slot_after(TimeDelta::days(2));
    let booked = office.book(&token, start).await;

    let offset = (start - TimeDelta::hours(24) - TimeDelta::seconds(5) - Utc::now()).num_seconds();
    let mut variables = office.env.env_vars();
    variables.push(("MEDFLOW_CLOCK_OFFSET_SECS".into(), offset.to_string()));
    variables.push(("MEDFLOW_REMINDERS_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    variables.push(("MEDFLOW_REMINDER_POLL_INTERVAL_MS".into(), "50".into()));
    variables.push(("MEDFLOW_REMINDER_WORKERS".into(), "1".into()));
    let mut crashing = variables.clone();
    crashing.push(("MEDFLOW_REMINDER_ABORT_AFTER_SMTP".into(), "true".into()));

    // The first process hands the e-mail to SMTP and dies before recording it.
    let mut service = ServiceProcess::spawn("medflow-reminder-service", &[], &crashing);
    wait_for_messages(&email, 1, Duration::from_secs(40)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while service.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not abort"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    office.wait_rows(&booked, "pending", 3).await;

    // The restarted one sends it once more, with the same Message-ID, and records it.
    let _restarted = ServiceProcess::spawn("medflow-reminder-service", &[], &variables);
    office.wait_rows(&booked, "sent", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = messages_to(&email).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(message_id(&messages[0]), message_id(&messages[1]));
}
