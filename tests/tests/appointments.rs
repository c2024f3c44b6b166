//! Appointments end to end: booking against the availability rule, conflicts enforced
//! by the write side under concurrency, rescheduling, cancellation and the consultation
//! life cycle, and the read models fed through the relay and Kafka.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use medflow_domain::appointment::AppointmentEvent;
use medflow_domain::doctor::DoctorCommand;
use medflow_domain::values::{AccountId, Role};
use medflow_infra::clock::ManualClock;
use medflow_tests::api::{expect_problem, Api};
use medflow_tests::database;
use medflow_tests::fixtures::{every_day, Fixtures};
use medflow_tests::TestEnv;
use rand::seq::SliceRandom;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

struct Clinic {
    env: TestEnv,
    api: Api,
    fixtures: Fixtures,
}

impl Clinic {
    async fn start() -> Self {
        let env = TestEnv::new().await;
        let api = env.start_spine().await;
        let fixtures = Fixtures::new(&env).await;
        Self { env, api, fixtures }
    }

    /// Starts both APIs on one manual clock, with relay and projectors.
    async fn start_at(now: DateTime<Utc>) -> (Self, Arc<ManualClock>) {
        let env = TestEnv::new().await;
        let clock = ManualClock::starting_at(now);
        // The clock jumps by hours, which must not idle out the sessions.
        let idle = Duration::from_secs(12 * 3600);
        let mut command_settings = env.command_settings();
        command_settings.session_idle_timeout = idle;
        let mut query_settings = env.query_settings();
        query_settings.session_idle_timeout = idle;
        let command = env
            .start_command_api_with_clock(command_settings, clock.clone())
            .await;
        let query = env
            .start_query_api_with_clock(query_settings, clock.clone())
            .await;
        env.start_relay();
        env.start_projectors();
        let fixtures = Fixtures::with_clock(&env, clock.clone()).await;
        let api = Api::new(&command, &query);
        (Self { env, api, fixtures }, clock)
    }

    /// Lists the doctor's slot starts in `[from, to)`, once the doctor is projected.
    async fn slots(
        &self,
        token: &str,
        doctor: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let path = format!(
            "/doctors/{doctor}/slots?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        );
        let body = medflow_tests::wait::eventually(
            Duration::from_secs(30),
            "the doctor in the directory",
            || async {
                let response = self.api.query_get(token, &path).await;
                (response.status() == StatusCode::OK)
                    .then_some(response)
                    .map(|response| async { response.json::<Value>().await.unwrap() })
            },
        )
        .await
        .await;
        body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|slot| instant(slot["start"].as_str().unwrap()))
            .collect()
    }

    async fn book(
        &self,
        token: &str,
        doctor: AccountId,
        start: DateTime<Utc>,
    ) -> reqwest::Response {
        self.api
            .command_post(
                token,
                "/appointments",
                json!({ "doctor_id": doctor.to_string(), "start": rfc3339(start) }),
            )
            .await
    }

    async fn book_ok(&self, token: &str, doctor: AccountId, start: DateTime<Utc>) -> Value {
        let response = self.book(token, doctor, start).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "booking failed: {body}");
        body
    }

    /// Reads an appointment through the query API once it has reached `sequence`.
    async fn appointment(&self, token: &str, accepted: &Value) -> Value {
        let path = format!(
            "/appointments/{}?wait_for_sequence={}&wait_ms=15000",
            accepted["appointment_id"].as_str().unwrap(),
            accepted["sequence"]
        );
        let response = self.api.query_get(token, &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

fn instant(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw)
        .unwrap()
        .with_timezone(&Utc)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn fifty_requests_for_one_slot_book_once() {
    let clinic = Clinic::start().await;
    let (doctor, _, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let mut patients = Vec::new();
    for _ in 0..50 {
        patients.push(clinic.fixtures.patient().await);
    }
    let now = Utc::now();
    let slot = clinic
        .slots(
            &patients[0].1,
            doctor,
            now + TimeDelta::days(2),
            now + TimeDelta::days(3),
        )
        .await[0];

    let responses = futures::future::join_all(
        patients
            .iter()
            .map(|(_, token)| clinic.book(token, doctor, slot)),
    )
    .await;
    let mut created = 0;
    let mut taken = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let body = expect_problem(response, StatusCode::CONFLICT).await;
                assert_eq!(
                    problem_type(&body),
                    "urn:medflow:problem:slot-taken",
                    "{body}"
                );
                taken += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(taken, 49);
}

/// Folds the appointment events of the store into the intervals still held, keyed by
/// appointment id, with doctor and patient.
async fn held_intervals(env: &TestEnv) -> Vec<(Uuid, Uuid, Uuid, DateTime<Utc>, DateTime<Utc>)> {
    let client = env.owner_client().await;
    let rows = client
        .query(
            "SELECT aggregate_id, payload::text FROM events WHERE aggregate_type = 'appointment'
             ORDER BY aggregate_id, sequence",
            &[],
        )
        .await
        .unwrap();
    let mut held: HashMap<Uuid, (Uuid, Uuid, DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for row in rows {
        let id = Uuid::parse_str(row.get(0)).unwrap();
        let event: AppointmentEvent = serde_json::from_str(row.get(1)).unwrap();
        match event {
            AppointmentEvent::AppointmentBooked {
                patient,
                doctor,
                slot,
                ..
            } => {
                held.insert(id, (doctor.0, patient.0, slot.start(), slot.end()));
            }
            AppointmentEvent::AppointmentRescheduled { to, .. } => {
                let entry = held.get_mut(&id).unwrap();
                entry.2 = to.start();
                entry.3 = to.end();
            }
            AppointmentEvent::AppointmentCancelled { .. } => {
                held.remove(&id);
            }
            _ => {}
        }
    }
    held.into_iter()
        .map(|(id, (doctor, patient, start, end))| (id, doctor, patient, start, end))
        .collect()
}

/// Asserts that no two intervals with the same key overlap.
fn assert_no_overlap(intervals: &mut [(Uuid, DateTime<Utc>, DateTime<Utc>)], what: &str) {
    intervals.sort_by_key(|(key, start, _)| (*key, *start));
    for pair in intervals.windows(2) {
        let (key_a, _, end_a) = pair[0];
        let (key_b, start_b, _) = pair[1];
        assert!(
            key_a != key_b || end_a <= start_b,
            "two appointments of {what} {key_a} overlap at {start_b}"
        );
    }
}

#[tokio::test]
async fn random_concurrent_bookings_never_overlap() {
    let clinic = Clinic::start().await;
    // Zones and window starts with different slot grids, so a patient's bookings with
    // two doctors can overlap without being identical.
    let setups = [
        ("UTC", "08:00"),
        ("Asia/Kolkata", "08:00"),
        ("Asia/Kathmandu", "08:00"),
        ("Europe/Berlin", "08:10"),
        ("America/New_York", "07:20"),
    ];
    let mut doctors = Vec::new();
    for index in 0..20 {
        let (zone, start) = setups[index % setups.len()];
        let (doctor, _, _) = clinic
            .fixtures
            .verified_doctor(zone, &every_day(start, "20:00"))
            .await;
        doctors.push(doctor);
    }
    let mut patients = Vec::new();
    for _ in 0..100 {
        patients.push(clinic.fixtures.patient().await);
    }

    let now = Utc::now();
    let (from, to) = (now + TimeDelta::days(2), now + TimeDelta::days(3));
    let mut slots = HashMap::new();
    for doctor in &doctors {
        let list = clinic.slots(&patients[0].1, *doctor, from, to).await;
        slots.insert(*doctor, list.into_iter().take(12).collect::<Vec<_>>());
    }

    let mut rng = rand::thread_rng();
    let attempts: Vec<(String, AccountId, DateTime<Utc>)> = (0..2000)
        .map(|_| {
            let (_, token) = patients.choose(&mut rng).unwrap();
            let doctor = *doctors.choose(&mut rng).unwrap();
            let start = *slots[&doctor].choose(&mut rng).unwrap();
            (token.clone(), doctor, start)
        })
        .collect();
    let statuses: Vec<(StatusCode, Value)> = futures::stream::iter(attempts)
        .map(|(token, doctor, start)| {
            let clinic = &clinic;
            async move {
                let response = clinic.book(&token, doctor, start).await;
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(40)
        .collect()
        .await;

    let mut created = 0;
    for (status, body) in &statuses {
        match *status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert!(
                [
                    "urn:medflow:problem:slot-taken",
                    "urn:medflow:problem:patient-overlap"
                ]
                .contains(&problem_type(body)),
                "{body}"
            ),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(created > 100, "only {created} bookings succeeded");

    let held = held_intervals(&clinic.env).await;
    assert_eq!(held.len(), created);
    let mut by_doctor: Vec<_> = held.iter().map(|h| (h.1, h.3, h.4)).collect();
    assert_no_overlap(&mut by_doctor, "doctor");
    let mut by_patient: Vec<_> = held.iter().map(|h| (h.2, h.3, h.4)).collect();
    assert_no_overlap(&mut by_patient, "patient");
}

#[tokio::test]
async fn patient_cannot_hold_overlapping_appointments() {
    let clinic = Clinic::start().await;
    let (on_the_hour, _, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let (quarter_past, _, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:15", "20:15"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    // A whole day, so that the slots used below do not run past the evening end.
    let day = (Utc::now() + TimeDelta::days(2))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let first = clinic
        .slots(&token, on_the_hour, day, day + TimeDelta::days(1))
        .await[2];
    clinic.book_ok(&token, on_the_hour, first).await;

    // The other doctor's slot starts 15 minutes into the first appointment.
    let overlapping = first + TimeDelta::minutes(15);
    let listed = clinic
        .slots(&token, quarter_past, day, day + TimeDelta::days(1))
        .await;
    assert!(listed.contains(&overlapping));
    let response = clinic.book(&token, quarter_past, overlapping).await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:patient-overlap");

    // Right after the first appointment ends is fine.
    clinic
        .book_ok(&token, quarter_past, first + TimeDelta::minutes(45))
        .await;
}

#[tokio::test]
async fn booking_follows_the_availability_rule() {
    // Monday 2030-01-07 12:00 UTC; the doctor works 09:00-17:00 UTC every day.
    let now = instant("2030-01-07T12:00:00Z");
    let (clinic, _clock) = Clinic::start_at(now).await;
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("09:00", "17:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;

    // Time off on Tuesday 10:00-11:00.
    let response = clinic
        .api
        .command_post(
            &doctor_token,
            "/doctors/me/time-off",
            json!({ "start": "2030-01-08T10:00:00Z", "end": "2030-01-08T11:00:00Z" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let inside_time_off = instant("2030-01-08T10:30:00Z");
    let listed = medflow_tests::wait::eventually(
        Duration::from_secs(30),
        "the time off in the slot list",
        || async {
            let listed = clinic
                .slots(
                    &token,
                    doctor,
                    now - TimeDelta::hours(3),
                    now + TimeDelta::days(1),
                )
                .await;
            (!listed.contains(&inside_time_off)).then_some(listed)
        },
    )
    .await;

    let cases = [
        ("started a minute ago", "2030-01-07T11:59:00Z"),
        ("slot started a minute ago", "2030-01-07T11:30:00Z"),
        ("inside the minimum notice", "2030-01-07T12:30:00Z"),
        ("off the slot grid", "2030-01-08T09:10:00Z"),
        ("outside the weekly window", "2030-01-08T18:00:00Z"),
        ("inside time off", "2030-01-08T10:30:00Z"),
        ("beyond the horizon", "2030-03-11T09:00:00Z"),
    ];
    for (case, start) in cases {
        let start = instant(start);
        assert!(!listed.contains(&start), "{case}: listed");
        let response = clinic.book(&token, doctor, start).await;
        let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            problem_type(&body),
            "urn:medflow:problem:slot-unavailable",
            "{case}: {body}"
        );
        assert_eq!(body["errors"][0]["field"], "start", "{case}: {body}");
    }

    // The first listed slot after the notice is bookable.
    assert_eq!(listed[0], instant("2030-01-07T13:00:00Z"));
    clinic.book_ok(&token, doctor, listed[0]).await;
}

#[tokio::test]
async fn unverified_and_suspended_doctors_cannot_be_booked() {
    let clinic = Clinic::start().await;
    let (doctor, _, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    let now = Utc::now();
    let slots = clinic
        .slots(
            &token,
            doctor,
            now + TimeDelta::days(2),
            now + TimeDelta::days(3),
        )
        .await;
    // A booking before the suspension leaves the verified profile in the command API's
    // memory; the suspension must still apply to the next booking.
    let (_, earlier) = clinic.fixtures.patient().await;
    clinic.book_ok(&earlier, doctor, slots[1]).await;
    let slot = slots[0];
    clinic.fixtures.suspend(doctor).await;
    let response = clinic.book(&token, doctor, slot).await;
    let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        problem_type(&body),
        "urn:medflow:problem:doctor-not-bookable"
    );
    assert_eq!(body["errors"][0]["field"], "doctor_id");

    // A doctor who only saved a draft profile.
    let draft = AccountId(Uuid::new_v4());
    let details = clinic.fixtures.details(draft, "Drew Draft", "UTC").await;
    clinic
        .fixtures
        .run_doctor(
            draft,
            DoctorCommand::UpdateProfile {
                doctor: draft,
                details,
            },
        )
        .await;
    let response = clinic.book(&token, draft, slot).await;
    let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        problem_type(&body),
        "urn:medflow:problem:doctor-not-bookable"
    );

    // An id without a doctor profile.
    let response = clinic.book(&token, AccountId(Uuid::new_v4()), slot).await;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn booking_rejects_bad_input() {
    let clinic = Clinic::start().await;
    let (_, token) = clinic.fixtures.patient().await;
    let cases = [
        (
            json!({ "doctor_id": "nope", "start": "2030-01-01T09:00:00Z" }),
            "doctor_id",
        ),
        (
            json!({ "doctor_id": Uuid::new_v4().to_string(), "start": "tomorrow" }),
            "start",
        ),
        (
            json!({ "doctor_id": Uuid::new_v4().to_string(), "start": "2030-01-01T25:00:00Z" }),
            "start",
        ),
        (json!({ "doctor_id": Uuid::new_v4().to_string() }), "start"),
        (
            json!({ "doctor_id": 7, "start": "2030-01-01T09:00:00Z" }),
            "doctor_id",
        ),
    ];
    for (body, field) in cases {
        let response = clinic
            .api
            .command_post(&token, "/appointments", body.clone())
            .await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|error| error["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body} -> {problem}");
    }

    // Only patients book.
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let response = clinic
        .book(&doctor_token, doctor, Utc::now() + TimeDelta::days(2))
        .await;
    expect_problem(response, StatusCode::FORBIDDEN).await;

    // A start half a second past a slot start is quoted with its fraction, not as the
    // valid start it was rounded to.
    let day = (Utc::now() + TimeDelta::days(2)).date_naive();
    let response = clinic
        .api
        .command_post(
            &token,
            "/appointments",
            json!({ "doctor_id": doctor.to_string(), "start": format!("{day}T10:00:00.5Z") }),
        )
        .await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        problem_type(&problem),
        "urn:medflow:problem:slot-unavailable"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("'{day}T10:00:00.500Z'")),
        "{detail}"
    );
}

#[tokio::test]
async fn reschedule_into_taken_slot_changes_nothing() {
    let clinic = Clinic::start().await;
    let (doctor, _, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let (_, alice) = clinic.fixtures.patient().await;
    let (_, bob) = clinic.fixtures.patient().await;
    let now = Utc::now();
    let slots = clinic
        .slots(
            &alice,
            doctor,
            now + TimeDelta::days(2),
            now + TimeDelta::days(3),
        )
        .await;
    let booked = clinic.book_ok(&alice, doctor, slots[0]).await;
    clinic.book_ok(&bob, doctor, slots[1]).await;
    let id = booked["appointment_id"].as_str().unwrap().to_owned();

    let response = clinic
        .api
        .command_post(
            &alice,
            &format!("/appointments/{id}/reschedule"),
            json!({ "start": rfc3339(slots[1]) }),
        )
        .await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:slot-taken");
    let view = clinic.appointment(&alice, &booked).await;
    assert_eq!(instant(view["start"].as_str().unwrap()), slots[0]);
    assert_eq!(view["reschedule_count"], 0);

    // Moving to a free slot frees the old one in the same event.
    let response = clinic
        .api
        .command_post(
            &alice,
            &format!("/appointments/{id}/reschedule"),
            json!({ "start": rfc3339(slots[2]) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let moved: Value = response.json().await.unwrap();
    assert_eq!(moved["sequence"], 2);
    let view = clinic.appointment(&alice, &moved).await;
    assert_eq!(instant(view["start"].as_str().unwrap()), slots[2]);
    let (_, carol) = clinic.fixtures.patient().await;
    clinic.book_ok(&carol, doctor, slots[0]).await;

    // Bob cannot move Alice's appointment; he gets the same 404 as for no appointment.
    let response = clinic
        .api
        .command_post(
            &bob,
            &format!("/appointments/{id}/reschedule"),
            json!({ "start": rfc3339(slots[3]) }),
        )
        .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn illegal_transitions_are_rejected() {
    let booked_at = instant("2030-01-07T08:00:00Z");
    let (clinic, clock) = Clinic::start_at(booked_at).await;
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("09:00", "17:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    let (_, stranger) = clinic.fixtures.patient().await;
    let slot = instant("2030-01-07T10:00:00Z");
    clinic
        .slots(&token, doctor, booked_at, booked_at + TimeDelta::days(1))
        .await;
    let first = clinic.book_ok(&token, doctor, slot).await;
    let second = clinic
        .book_ok(&token, doctor, slot + TimeDelta::hours(2))
        .await;
    let first_id = first["appointment_id"].as_str().unwrap();
    let second_id = second["appointment_id"].as_str().unwrap();
    let post = |token: &str, path: String, body: Value| {
        let api = clinic.api.clone();
        let token = token.to_owned();
        async move { api.command_post(&token, &path, body).await }
    };

    // Too early to start, a stranger cannot cancel, and a patient cannot start.
    let response = post(
        &doctor_token,
        format!("/appointments/{first_id}/start"),
        json!({}),
    )
    .await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:too-early");
    let response = post(
        &stranger,
        format!("/appointments/{first_id}/cancellation"),
        json!({ "reason": "not mine" }),
    )
    .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = post(&token, format!("/appointments/{first_id}/start"), json!({})).await;
    expect_problem(response, StatusCode::FORBIDDEN).await;

    // Start and complete the first, then try to cancel it.
    clock.advance(Duration::from_secs(2 * 3600 - 300));
    let response = post(
        &doctor_token,
        format!("/appointments/{first_id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = post(
        &doctor_token,
        format!("/appointments/{first_id}/completion"),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = post(
        &token,
        format!("/appointments/{first_id}/cancellation"),
        json!({ "reason": "feeling better" }),
    )
    .await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        problem_type(&body),
        "urn:medflow:problem:invalid-transition"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("completed"),
        "{body}"
    );

    // Cancel the second, then try to start it.
    let response = post(
        &doctor_token,
        format!("/appointments/{second_id}/cancellation"),
        json!({ "reason": "the clinic is closed" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let cancelled: Value = response.json().await.unwrap();
    clock.advance(Duration::from_secs(2 * 3600));
    let response = post(
        &doctor_token,
        format!("/appointments/{second_id}/start"),
        json!({}),
    )
    .await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        problem_type(&body),
        "urn:medflow:problem:invalid-transition"
    );

    // The patient reads the reason; it is not in the event store in clear.
    let view = clinic
        .appointment(
            &token,
            &json!({ "appointment_id": second_id, "sequence": cancelled["sequence"] }),
        )
        .await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["cancelled_by"], "doctor");
    assert_eq!(view["cancellation_reason"], "the clinic is closed");
    let client = clinic.env.owner_client().await;
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%clinic is closed%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);

    // A missing reason is named.
    let response = post(
        &token,
        format!("/appointments/{first_id}/cancellation"),
        json!({ "reason": " " }),
    )
    .await;
    let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "reason");
}

#[tokio::test]
async fn time_off_reports_bookings_and_cancels_none() {
    let clinic = Clinic::start().await;
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    let now = Utc::now();
    let slots = clinic
        .slots(
            &token,
            doctor,
            now + TimeDelta::days(2),
            now + TimeDelta::days(3),
        )
        .await;
    let booked = clinic.book_ok(&token, doctor, slots[1]).await;

    let response = clinic
        .api
        .command_post(
            &doctor_token,
            "/doctors/me/time-off",
            json!({ "start": rfc3339(slots[0]), "end": rfc3339(slots[3]) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["affected_appointments"],
        json!([booked["appointment_id"]])
    );
    let view = clinic.appointment(&token, &booked).await;
    assert_eq!(view["status"], "booked");

    // The time off now blocks the slots around the booking.
    let (_, other) = clinic.fixtures.patient().await;
    let response = clinic.book(&other, doctor, slots[2]).await;
    let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:slot-unavailable");
}

/// Bookings sent while the doctor adds time off over their slots: each one either
/// commits first and is listed among the affected appointments, or is rejected.
#[tokio::test]
async fn racing_bookings_reported_or_rejected() {
    let clinic = Clinic::start().await;
    let now = Utc::now();
    for round in 0..3 {
        let (doctor, doctor_token, _) = clinic
            .fixtures
            .verified_doctor("UTC", &every_day("08:00", "20:00"))
            .await;
        let mut patients = Vec::new();
        for _ in 0..12 {
            patients.push(clinic.fixtures.patient().await.1);
        }
        let day = now + TimeDelta::days(2 + round);
        let slots = clinic
            .slots(&patients[0], doctor, day, day + TimeDelta::days(1))
            .await;
        let slots = &slots[..patients.len()];
        let time_off = json!({
            "start": rfc3339(slots[0]),
            "end": rfc3339(*slots.last().unwrap() + TimeDelta::minutes(30)),
        });

        let bookings = futures::future::join_all(
            patients
                .iter()
                .zip(slots)
                .map(|(token, start)| clinic.book(token, doctor, *start)),
        );
        let added = async {
            // Let the first bookings pass their slot check before the time off lands.
            tokio::time::sleep(Duration::from_millis(5 * round as u64)).await;
            clinic
                .api
                .command_post(&doctor_token, "/doctors/me/time-off", time_off.clone())
                .await
        };
        let (bookings, added) = tokio::join!(bookings, added);
        assert_eq!(added.status(), StatusCode::CREATED);
        let added: Value = added.json().await.unwrap();
        let affected: Vec<&str> = added["affected_appointments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect();

        let mut booked = Vec::new();
        for response in bookings {
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            match status {
                StatusCode::CREATED => {
                    booked.push(body["appointment_id"].as_str().unwrap().to_owned())
                }
                StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {}
                other => panic!("booking returned {other}: {body}"),
            }
        }
        booked.sort();
        let mut reported: Vec<String> = affected.iter().map(|id| (*id).to_owned()).collect();
        reported.sort();
        assert_eq!(
            booked, reported,
            "round {round}: the bookings that committed are exactly the affected ones"
        );
    }
}

/// A clinic with one doctor available from 08:00 to 20:00 UTC every day, one patient,
/// and the doctor's slots on the day after tomorrow.
struct OneDoctor {
    clinic: Clinic,
    doctor: AccountId,
    doctor_token: String,
    patient: AccountId,
    token: String,
    slots: Vec<DateTime<Utc>>,
}

impl OneDoctor {
    async fn start() -> Self {
        let clinic = Clinic::start().await;
        let (doctor, doctor_token, _) = clinic
            .fixtures
            .verified_doctor("UTC", &every_day("08:00", "20:00"))
            .await;
        let (patient, token) = clinic.fixtures.patient().await;
        let day = Utc::now() + TimeDelta::days(2);
        let slots = clinic
            .slots(&token, doctor, day, day + TimeDelta::days(1))
            .await;
        Self {
            clinic,
            doctor,
            doctor_token,
            patient,
            token,
            slots,
        }
    }
}

/// Inserts a 30-minute reservation starting at `start` inside `transaction`, as a
/// second writer beside the command API.
async fn reserve(
    transaction: &tokio_postgres::Transaction<'_>,
    doctor: Uuid,
    patient: Uuid,
    start: DateTime<Utc>,
) -> Uuid {
    let appointment_id = Uuid::new_v4();
    transaction
        .execute(
            "INSERT INTO appointment_reservations (appointment_id, doctor_id, patient_id, during) \
             VALUES ($1, $2, $3, tstzrange($4::timestamptz, $4::timestamptz + interval '30 minutes'))",
            &[&appointment_id, &doctor, &patient, &start],
        )
        .await
        .unwrap();
    appointment_id
}

/// A booking checked against the doctor's profile while a profile change is still
/// open waits for it. Because the change moved the profile's sequence, the booking is
/// rejected and writes nothing. Once the sequence is back, it goes through.
#[tokio::test]
async fn booking_waits_for_an_open_profile_change() {
    let OneDoctor {
        clinic,
        doctor,
        token,
        slots,
        ..
    } = OneDoctor::start().await;

    let mut client = clinic.env.owner_client().await;
    let change = client.transaction().await.unwrap();
    let updated = change
        .execute(
            "UPDATE doctor_calendar_versions SET profile_sequence = profile_sequence + 1 \
             WHERE doctor_id = $1",
            &[&doctor.0],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1, "the verified doctor has a calendar version row");
    let commit = async {
        database::until_a_statement_waits_for_a_lock(&clinic.env.database).await;
        change.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(clinic.book(&token, doctor, slots[0]), commit);
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:schedule-changed");
    let written: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE aggregate_type = 'appointment') \
                  + (SELECT count(*) FROM appointment_reservations)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        written, 0,
        "a refused booking leaves neither event nor reservation"
    );

    client
        .execute(
            "UPDATE doctor_calendar_versions SET profile_sequence = profile_sequence - 1 \
             WHERE doctor_id = $1",
            &[&doctor.0],
        )
        .await
        .unwrap();
    clinic.book_ok(&token, doctor, slots[0]).await;
}

/// Time off added while a booking has the doctor's calendar row locked waits for it,
/// then lists the reservation the booking wrote.
#[tokio::test]
async fn time_off_waits_for_a_booking_in_flight() {
    let OneDoctor {
        clinic,
        doctor,
        doctor_token,
        patient,
        slots,
        ..
    } = OneDoctor::start().await;

    // Plays the part of a booking statement: the row lock, then its reservation.
    let mut client = clinic.env.owner_client().await;
    let booking = client.transaction().await.unwrap();
    let locked = booking
        .execute(
            "SELECT FROM doctor_calendar_versions WHERE doctor_id = $1 FOR SHARE",
            &[&doctor.0],
        )
        .await
        .unwrap();
    assert_eq!(locked, 1);
    let appointment_id = reserve(&booking, doctor.0, patient.0, slots[1]).await;
    let commit = async {
        database::until_a_statement_waits_for_a_lock(&clinic.env.database).await;
        booking.commit().await.unwrap();
    };
    let time_off = clinic.api.command_post(
        &doctor_token,
        "/doctors/me/time-off",
        json!({ "start": rfc3339(slots[0]), "end": rfc3339(slots[3]) }),
    );
    let (response, ()) = tokio::join!(time_off, commit);
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["affected_appointments"],
        json!([appointment_id.to_string()])
    );
}

/// A booking that PostgreSQL aborts to break a deadlock on the exclusion constraints
/// is run once more and gets the conflict it meets, not a server error.
#[tokio::test]
async fn deadlocked_booking_reports_the_conflict() {
    let OneDoctor {
        clinic,
        doctor,
        patient,
        token,
        slots,
        ..
    } = OneDoctor::start().await;

    // A second writer has reserved the patient's interval, so the booking, which checks the
    // doctor's constraint first, waits on the patient's. The writer then adds the
    // doctor's interval and waits for the booking: a deadlock. The writer checks for
    // deadlocks after 10 s, the booking's connection after 1 s (the default), so
    // PostgreSQL aborts the booking.
    let mut client = database::connect(&database::url("postgres", &clinic.env.database)).await;
    let writer = client.transaction().await.unwrap();
    writer
        .execute("SET LOCAL deadlock_timeout = '10s'", &[])
        .await
        .unwrap();
    reserve(&writer, Uuid::new_v4(), patient.0, slots[0]).await;
    let deadlock = async {
        database::until_a_statement_waits_for_a_lock(&clinic.env.database).await;
        reserve(&writer, doctor.0, Uuid::new_v4(), slots[0]).await;
        // The booking, run again, now waits for this transaction's intervals.
        database::until_a_statement_waits_for_a_lock(&clinic.env.database).await;
        writer.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(clinic.book(&token, doctor, slots[0]), deadlock);
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "urn:medflow:problem:slot-taken");

    let appended: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE aggregate_type = 'appointment'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(appended, 0);
}

#[tokio::test]
async fn zone_change_keeps_booked_instants() {
    let clinic = Clinic::start().await;
    let (doctor, _, _) = clinic
        .fixtures
        .verified_doctor("Europe/Berlin", &every_day("09:00", "17:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    let now = Utc::now();
    let slots = clinic
        .slots(
            &token,
            doctor,
            now + TimeDelta::days(2),
            now + TimeDelta::days(3),
        )
        .await;
    let booked = clinic.book_ok(&token, doctor, slots[0]).await;

    let details = clinic
        .fixtures
        .details(doctor, "Dana Heart", "America/New_York")
        .await;
    clinic
        .fixtures
        .run_doctor(doctor, DoctorCommand::UpdateProfile { doctor, details })
        .await;

    let view = clinic.appointment(&token, &booked).await;
    assert_eq!(instant(view["start"].as_str().unwrap()), slots[0]);
    let moved = medflow_tests::wait::eventually(
        Duration::from_secs(30),
        "slots in the new zone",
        || async {
            let path = format!(
                "/doctors/{doctor}/slots?from={}&to={}",
                rfc3339(now + TimeDelta::days(2)),
                rfc3339(now + TimeDelta::days(3))
            );
            let body: Value = clinic
                .api
                .query_get(&token, &path)
                .await
                .json()
                .await
                .unwrap();
            (body["time_zone"] == "America/New_York").then_some(body)
        },
    )
    .await;
    for slot in moved["slots"].as_array().unwrap() {
        let local = slot["start"].as_str().unwrap();
        let start = instant(local);
        let new_york = start.with_timezone(&chrono_tz::America::New_York);
        assert!(
            (9..17).contains(&chrono::Timelike::hour(&new_york)),
            "{local} is outside 09:00-17:00 New York time"
        );
    }
}

#[tokio::test]
async fn read_models_show_bookings() {
    let clinic = Clinic::start().await;
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("Asia/Kolkata", &every_day("09:00", "17:00"))
        .await;
    let (patient, token) = clinic.fixtures.patient().await;
    let now = Utc::now();
    let (from, to) = (now + TimeDelta::days(2), now + TimeDelta::days(3));
    let slots = clinic.slots(&token, doctor, from, to).await;
    let first = clinic.book_ok(&token, doctor, slots[0]).await;
    let second = clinic.book_ok(&token, doctor, slots[3]).await;
    clinic.appointment(&token, &first).await;
    clinic.appointment(&token, &second).await;

    // The slot list and the directory skip booked slots.
    let after = clinic.slots(&token, doctor, from, to).await;
    assert!(!after.contains(&slots[0]));
    assert!(!after.contains(&slots[3]));
    assert_eq!(after.len(), slots.len() - 2);

    // The patient's list, earliest first.
    let response = clinic
        .api
        .query_get(&token, "/patients/me/appointments")
        .await;
    let list: Value = response.json().await.unwrap();
    let ids: Vec<&str> = list["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["appointment_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            first["appointment_id"].as_str().unwrap(),
            second["appointment_id"].as_str().unwrap()
        ]
    );
    assert_eq!(list["appointments"][0]["patient_id"], patient.to_string());

    // The doctor's day in Kolkata time contains the first booking.
    let local_date = slots[0]
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let response = clinic
        .api
        .query_get(
            &doctor_token,
            &format!("/doctors/me/schedule?date={local_date}"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let day: Value = response.json().await.unwrap();
    assert_eq!(day["time_zone"], "Asia/Kolkata");
    assert_eq!(
        day["appointments"][0]["appointment_id"],
        first["appointment_id"]
    );

    // Bad schedule dates are named.
    let response = clinic
        .api
        .query_get(&doctor_token, "/doctors/me/schedule?date=2030-02-30")
        .await;
    let body = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "date");

    // Another patient cannot read the appointment.
    let (_, stranger) = clinic.fixtures.patient().await;
    let response = clinic
        .api
        .query_get(
            &stranger,
            &format!(
                "/appointments/{}",
                first["appointment_id"].as_str().unwrap()
            ),
        )
        .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;

    // The admin overview counts both.
    let admin = clinic
        .fixtures
        .session(AccountId(Uuid::new_v4()), Role::Admin)
        .await;
    let response = clinic
        .api
        .query_get(
            &admin,
            &format!(
                "/admin/appointments/overview?from={}&to={}",
                rfc3339(from),
                rfc3339(to)
            ),
        )
        .await;
    let overview: Value = response.json().await.unwrap();
    assert_eq!(overview["total"], 2, "{overview}");
    assert_eq!(overview["by_status"]["booked"], 2);
    assert_eq!(overview["doctors"], 1);
}

/// Returns the directory's next free slot of `doctor`, or `None` until the doctor is
/// listed with one.
async fn directory_next_slot(
    clinic: &Clinic,
    token: &str,
    doctor: AccountId,
) -> Option<DateTime<Utc>> {
    let page: Value = clinic
        .api
        .query_get(token, "/doctors?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let entry = page["doctors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["doctor_id"] == doctor.to_string())?;
    entry["next_available_slot"]["start"].as_str().map(instant)
}

/// Waits until the directory shows `expected` as the doctor's next free slot. Pages are
/// kept for up to 30 s, so a missed change would outlast the 5 s allowed here.
async fn expect_directory_next_slot(
    clinic: &Clinic,
    token: &str,
    doctor: AccountId,
    expected: DateTime<Utc>,
) {
    medflow_tests::wait::eventually(
        Duration::from_secs(5),
        &format!("the directory to show the next slot at {expected}"),
        || async {
            (directory_next_slot(clinic, token, doctor).await == Some(expected)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn directory_next_slot_follows_changes() {
    // With a minimum notice of one hour, the 09:00 slot stays bookable for 10 seconds.
    let start = instant("2030-01-07T07:59:50Z");
    let (clinic, clock) = Clinic::start_at(start).await;
    let (doctor, doctor_token, _) = clinic
        .fixtures
        .verified_doctor("UTC", &every_day("09:00", "17:00"))
        .await;
    let (_, token) = clinic.fixtures.patient().await;
    medflow_tests::wait::eventually(
        Duration::from_secs(30),
        "the doctor in the directory",
        || directory_next_slot(&clinic, &token, doctor),
    )
    .await;
    let nine = instant("2030-01-07T09:00:00Z");
    assert_eq!(
        directory_next_slot(&clinic, &token, doctor).await,
        Some(nine)
    );
    assert_eq!(
        directory_next_slot(&clinic, &token, doctor).await,
        Some(nine)
    );

    // The minimum notice reaches the 09:00 slot.
    clock.advance(Duration::from_secs(15));
    let half_past_nine = instant("2030-01-07T09:30:00Z");
    assert_eq!(
        directory_next_slot(&clinic, &token, doctor).await,
        Some(half_past_nine)
    );

    // A booking takes it.
    let booked = clinic.book_ok(&token, doctor, half_past_nine).await;
    clinic.appointment(&token, &booked).await;
    expect_directory_next_slot(&clinic, &token, doctor, instant("2030-01-07T10:00:00Z")).await;

    // Time off covers the next hour.
    let response = clinic
        .api
        .command_post(
            &doctor_token,
            "/doctors/me/time-off",
            json!({ "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    expect_directory_next_slot(&clinic, &token, doctor, instant("2030-01-07T11:00:00Z")).await;

    // A cancellation frees the booked slot again.
    let path = format!(
        "/appointments/{}/cancellation",
        booked["appointment_id"].as_str().unwrap()
    );
    let response = clinic
        .api
        .command_post(&token, &path, json!({ "reason": "plans changed" }))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    expect_directory_next_slot(&clinic, &token, doctor, half_past_nine).await;
}

/// Cancels an appointment through `api`, as the patient or doctor behind `token`.
async fn cancel(api: &Api, token: &str, appointment_id: &str) -> reqwest::Response {
    api.command_post(
        token,
        &format!("/appointments/{appointment_id}/cancellation"),
        json!({ "reason": "Plans changed" }),
    )
    .await
}

/// Counts the doctor's rows in `appointment_reservations`.
async fn reservation_count(clinic: &Clinic, doctor: AccountId) -> i64 {
    clinic
        .env
        .app_client()
        .await
        .query_one(
            "SELECT count(*) FROM appointment_reservations WHERE doctor_id = $1",
            &[&doctor.0],
        )
        .await
        .unwrap()
        .get(0)
}

/// A command API process remembers doctor profiles between bookings. Changes made
/// through another process reach its bookings all the same: a booking inside time off
/// added elsewhere is refused with the rule's own problem, and a booking inside time
/// off removed elsewhere goes through.
#[tokio::test]
async fn remembered_profile_follows_changes_made_elsewhere() {
    let OneDoctor {
        clinic,
        doctor,
        doctor_token,
        token,
        slots,
        ..
    } = OneDoctor::start().await;
    let elsewhere = Api::new(&clinic.env.start_command_api().await, &clinic.api.query);
    // This process now remembers the profile without time off.
    clinic.book_ok(&token, doctor, slots[0]).await;

    let time_off = json!({
        "start": rfc3339(slots[4]),
        "end": rfc3339(slots[6] + TimeDelta::minutes(30)),
    });
    let added = elsewhere
        .command_post(&doctor_token, "/doctors/me/time-off", time_off)
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let added: Value = added.json().await.unwrap();
    let problem = expect_problem(
        clinic.book(&token, doctor, slots[5]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["type"], "urn:medflow:problem:slot-unavailable");

    // This process now remembers the profile with the time off.
    let removed = elsewhere
        .command_delete(
            &doctor_token,
            &format!(
                "/doctors/me/time-off/{}",
                added["time_off_id"].as_str().unwrap()
            ),
        )
        .await;
    assert!(removed.status().is_success(), "{}", removed.status());
    clinic.book_ok(&token, doctor, slots[5]).await;
    assert_eq!(reservation_count(&clinic, doctor).await, 2);
}

/// A command acts on the session this process keeps in memory, so a revocation whose
/// announcement has not arrived yet must still stop it. The statement that appends the
/// events checks the session. A command that commits nothing looks the session up
/// before its response is sent.
#[tokio::test]
async fn revoked_session_stops_cached_commands() {
    let OneDoctor {
        clinic,
        doctor,
        patient,
        token,
        slots,
        ..
    } = OneDoctor::start().await;
    let booked = clinic.book_ok(&token, doctor, slots[0]).await;
    let appointment_id = booked["appointment_id"].as_str().unwrap().to_owned();

    // Revoked by a superuser connection with triggers off, so no announcement reaches
    // the command API and its session cache still contains the session.
    let superuser = database::connect(&database::url("postgres", &clinic.env.database)).await;
    superuser
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let revoked = superuser
        .execute(
            "UPDATE sessions SET revoked_at = now() WHERE account_id = $1",
            &[&patient.0],
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);

    let cancellation = cancel(&clinic.api, &token, &appointment_id).await;
    expect_problem(cancellation, StatusCode::UNAUTHORIZED).await;
    expect_problem(
        clinic.book(&token, doctor, slots[2]).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Off the slot grid: rejected before any write, so the response is checked instead.
    expect_problem(
        clinic
            .book(&token, doctor, slots[2] + TimeDelta::minutes(7))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let events = clinic
        .env
        .app_client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE aggregate_type = 'appointment'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(events, 1, "only the first booking is stored");
}

/// A command API process remembers the appointments it committed. Commands run there
/// after another process changed the appointment act on the stored state all the same.
#[tokio::test]
async fn remembered_appointment_follows_changes_made_elsewhere() {
    let OneDoctor {
        clinic,
        doctor,
        token,
        slots,
        ..
    } = OneDoctor::start().await;
    let elsewhere = Api::new(&clinic.env.start_command_api().await, &clinic.api.query);
    let booked = clinic.book_ok(&token, doctor, slots[0]).await;
    let appointment_id = booked["appointment_id"].as_str().unwrap().to_owned();

    let moved = elsewhere
        .command_post(
            &token,
            &format!("/appointments/{appointment_id}/reschedule"),
            json!({ "start": rfc3339(slots[3]) }),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);

    // This process still remembers the appointment at sequence 1.
    let cancelled = cancel(&clinic.api, &token, &appointment_id).await;
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["sequence"], 3);

    // The other process remembers it rescheduled, a state that has passed.
    let again = cancel(&elsewhere, &token, &appointment_id).await;
    let problem = expect_problem(again, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:medflow:problem:invalid-transition");
    assert_eq!(reservation_count(&clinic, doctor).await, 0);
}

/// Path ids that are no UUID, including a NUL byte sent as `%00` (which PostgreSQL text
/// cannot store, and the access entry of the failure quotes the id), get a problem
/// naming the parameter.
#[tokio::test]
async fn malformed_path_ids_get_problems() {
    let OneDoctor {
        clinic,
        doctor_token,
        token,
        ..
    } = OneDoctor::start().await;
    for id in ["%00", "a%00b", "not-a-uuid"] {
        let cancellation = clinic
            .api
            .command_post(
                &token,
                &format!("/appointments/{id}/cancellation"),
                json!({ "reason": "No longer needed" }),
            )
            .await;
        let problem = expect_problem(cancellation, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], "appointment_id", "{id}");

        let read = clinic
            .api
            .query_get(&token, &format!("/appointments/{id}"))
            .await;
        expect_problem(read, StatusCode::UNPROCESSABLE_ENTITY).await;

        let time_off = clinic
            .api
            .command_delete(&doctor_token, &format!("/doctors/me/time-off/{id}"))
            .await;
        expect_problem(time_off, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

/// Four patients race for one slot, released together. Every loser gets `slot-taken`:
/// the doctor's bookings commit one after the other, so none waits on another's
/// uncommitted reservation, where they could deadlock twice and end with the generic
/// conflict. NOTE: with a shared lock the deadlocks depend on timing, so this test
/// failed in one run of three rather than in every run.
#[tokio::test]
async fn contested_slot_reports_slot_taken() {
    let OneDoctor {
        clinic,
        doctor,
        slots,
        ..
    } = OneDoctor::start().await;
    let mut patients = Vec::new();
    for _ in 0..4 {
        patients.push(clinic.fixtures.patient().await.1);
    }

    // A second writer has locked the doctor's calendar row, so that all four bookings wait
    // for it and then run at the same moment.
    let mut client = database::connect(&database::url("postgres", &clinic.env.database)).await;
    let holder = client.transaction().await.unwrap();
    holder
        .execute(
            "SELECT FROM doctor_calendar_versions WHERE doctor_id = $1 FOR UPDATE",
            &[&doctor.0],
        )
        .await
        .unwrap();
    let bookings = futures::future::join_all(
        patients
            .iter()
            .map(|token| clinic.book(token, doctor, slots[0])),
    );
    let release = async {
        database::until_statements_wait_for_locks(&clinic.env.database, 4).await;
        holder.commit().await.unwrap();
    };
    let (responses, ()) = tokio::join!(bookings, release);

    let mut created = 0;
    for response in responses {
        if response.status() == StatusCode::CREATED {
            created += 1;
            continue;
        }
        let body = expect_problem(response, StatusCode::CONFLICT).await;
        assert_eq!(
            problem_type(&body),
            "urn:medflow:problem:slot-taken",
            "{body}"
        );
    }
    assert_eq!(created, 1);
}

/// Commands keep working when the server ends the command APIs' idle connections, as a
/// restart or an administrator would: no request fails because a pooled connection is
/// closed.
#[tokio::test]
async fn ended_connections_fail_no_command() {
    let OneDoctor {
        clinic,
        doctor,
        token,
        slots,
        ..
    } = OneDoctor::start().await;
    let elsewhere = Api::new(&clinic.env.start_command_api().await, &clinic.api.query);
    let bookings = futures::future::join_all(
        slots[..4]
            .iter()
            .map(|&start| clinic.book_ok(&token, doctor, start)),
    )
    .await;
    let ids: Vec<String> = bookings
        .iter()
        .map(|booked| booked["appointment_id"].as_str().unwrap().to_owned())
        .collect();
    // The other process loads the appointment from its pool and appends on its leases.
    let moved = elsewhere
        .command_post(
            &token,
            &format!("/appointments/{}/reschedule", ids[0]),
            json!({ "start": rfc3339(slots[10]) }),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);

    let superuser = database::connect(&database::url("postgres", &clinic.env.database)).await;
    let ended: Vec<i32> = superuser
        .query(
            "WITH app AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
               WHERE usename = 'medflow_app' AND datname = current_database()) \
             SELECT pid FROM app WHERE pg_terminate_backend(pid)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        ended.len() >= 4,
        "only {} connections were ended",
        ended.len()
    );
    // A backend ends a moment after it is signalled. Requests sent before would meet a
    // connection that closes mid-statement, which this test is not about.
    medflow_tests::wait::eventually(Duration::from_secs(10), "the backends to end", || async {
        let left: i64 = superuser
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&ended],
            )
            .await
            .unwrap()
            .get(0);
        (left == 0).then_some(())
    })
    .await;

    let moved = elsewhere
        .command_post(
            &token,
            &format!("/appointments/{}/reschedule", ids[1]),
            json!({ "start": rfc3339(slots[11]) }),
        )
        .await;
    assert_eq!(
        moved.status(),
        StatusCode::OK,
        "{}",
        moved.text().await.unwrap()
    );
    for id in &ids[2..] {
        let cancelled = cancel(&clinic.api, &token, id).await;
        assert_eq!(
            cancelled.status(),
            StatusCode::ACCEPTED,
            "{}",
            cancelled.text().await.unwrap()
        );
    }
    for &start in &slots[4..8] {
        clinic.book_ok(&token, doctor, start).await;
    }
}
