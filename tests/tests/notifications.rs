//! In-app notifications: appointment changes reach the recipient's Server-Sent Events
//! stream in real time and no other user's, and can be listed and marked read.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::StreamExt;
use medflow_infra::clock::ManualClock;
use medflow_tests::api::{expect_problem, unique_email};
use medflow_tests::fixtures::{every_day, Fixtures};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Reads `text/event-stream` frames until one of type `event` arrives; returns its data.
async fn next_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    event: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let kind = frame
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .unwrap_or_default();
            if kind == event {
                let data = frame
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .expect("event without data");
                return serde_json::from_str(data).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {event} event within 30 s"))
            .expect("stream ended")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn appointment_changes_reach_the_recipient_live() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    env.start_reminders_with(env.reminder_settings(), ManualClock::starting_now());
    let fixtures = Fixtures::new(&env).await;
    let (doctor, doctor_token, _) = fixtures
        .verified_doctor("UTC", &every_day("00:00", "24:00"))
        .await;
    let email = unique_email("notified.patient");
    api.register_ok("patient", &email, "Nora Notified").await;
    let token = api.login_ok(&email).await.token;
    let (_, bystander) = fixtures.patient().await;

    let open = |token: String| {
        let api = api.clone();
        async move {
            let response = api
                .http
                .get(format!("{}/notifications/stream", api.query))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"));
            response.bytes_stream()
        }
    };
    let mut patient_stream = Box::pin(open(token.clone()).await);
    let mut doctor_stream = Box::pin(open(doctor_token.clone()).await);
    let mut bystander_stream = Box::pin(open(bystander.clone()).await);

    let start: DateTime<Utc> = (Utc::now() + TimeDelta::days(2))
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap();
    let response = api
        .command_post(
            &token,
            "/appointments",
            json!({ "doctor_id": doctor.to_string(), "start": start.to_rfc3339() }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let booked: Value = response.json().await.unwrap();

    let mut buffer = String::new();
    let event = next_event(&mut patient_stream, &mut buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_booked");
    assert_eq!(event["appointment_id"], booked["appointment_id"]);
    let mut doctor_buffer = String::new();
    let event = next_event(&mut doctor_stream, &mut doctor_buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_booked");

    // The bystander's stream carries keep-alives at most.
    let quiet = tokio::time::timeout(Duration::from_secs(2), bystander_stream.next()).await;
    if let Ok(Some(Ok(chunk))) = quiet {
        assert!(!String::from_utf8_lossy(&chunk).contains("notification"));
    }

    // Listed, then marked read.
    let list: Value = api
        .query_get(&token, "/notifications?unread=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["unread"], 1);
    let id = list["notifications"][0]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = api
        .command_post(&bystander, &format!("/notifications/{id}/read"), json!({}))
        .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = api
        .command_post(&token, &format!("/notifications/{id}/read"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let list: Value = api
        .query_get(&token, "/notifications?unread=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["unread"], 0);
    assert_eq!(list["notifications"], json!([]));

    // Reschedule and cancel reach the stream in order.
    let appointment = booked["appointment_id"].as_str().unwrap();
    let response = api
        .command_post(
            &token,
            &format!("/appointments/{appointment}/reschedule"),
            json!({ "start": (start + TimeDelta::hours(1)).to_rfc3339() }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = next_event(&mut patient_stream, &mut buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_rescheduled");
    assert_eq!(event["appointment_id"], booked["appointment_id"]);
    let response = api
        .command_post(
            &token,
            &format!("/appointments/{appointment}/cancellation"),
            json!({ "reason": "Feeling better." }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let event = next_event(&mut patient_stream, &mut buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_cancelled");
    let event = next_event(&mut doctor_stream, &mut doctor_buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_rescheduled");
    let event = next_event(&mut doctor_stream, &mut doctor_buffer, "notification").await;
    assert_eq!(event["kind"], "appointment_cancelled");

    // Each list holds only its owner's notifications.
    let bystander_list: Value = api
        .query_get(&bystander, "/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bystander_list["notifications"], json!([]));
    let patient_list: Value = api
        .query_get(&token, "/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patient_list["notifications"].as_array().unwrap().len(), 3);
    assert_eq!(patient_list["unread"], 2);

    let response = api
        .http
        .get(format!("{}/notifications/stream", api.query))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = api.query_get(&token, "/notifications?limit=0").await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "limit");
}

#[tokio::test]
async fn stream_ends_with_its_session() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("streaming.patient");
    api.register_ok("patient", &email, "Stella Stream").await;
    let token = api.login_ok(&email).await.token;

    let response = api
        .http
        .get(format!("{}/notifications/stream", api.query))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = Box::pin(response.bytes_stream());

    let response = api.command_delete(&token, "/sessions/current").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // The next keep-alive tick (at most 15 s away) finds the session ended and closes
    // the stream instead of writing to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream stayed open after logout");
        match next {
            None | Some(Err(_)) => break,
            Some(Ok(chunk)) => {
                let text = String::from_utf8_lossy(&chunk);
                assert!(!text.contains("event: notification"), "{text}");
            }
        }
    }
}
