//! Video consultations: LiveKit tokens checked by LiveKit's own server SDK, the join
//! window, and signed webhooks recorded once per webhook id.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use medflow_infra::clock::ManualClock;
use medflow_infra::config::BookingSettings;
use medflow_infra::video::VideoTokenIssuer;
use medflow_tests::api::{expect_problem, Api};
use medflow_tests::fixtures::{every_day, Fixtures};
use medflow_tests::livekit::{sign_webhook_with_sdk, verify_with_sdk};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

struct Consultation {
    env: TestEnv,
    api: Api,
    fixtures: Fixtures,
    doctor: medflow_domain::values::AccountId,
    doctor_token: String,
    patient_token: String,
    appointment_id: Uuid,
    start: DateTime<Utc>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Books the doctor's next slot. Without minimum notice and with the window opening an
/// hour early, the video room of that slot is open now on the real clock, which LiveKit's
/// SDK checks tokens against.
async fn consultation() -> Consultation {
    let env = TestEnv::new().await;
    let booking = BookingSettings {
        minimum_notice_minutes: 0,
        horizon_days: 60,
    };
    let mut command_settings = env.command_settings();
    command_settings.booking = booking.clone();
    command_settings.video_join_before_minutes = 60;
    let mut query_settings = env.query_settings();
    query_settings.booking = booking;
    let command = env.start_command_api_with(command_settings).await;
    let query = env.start_query_api_with(query_settings).await;
    env.start_relay();
    env.start_projectors();
    let api = Api::new(&command, &query);
    let fixtures = Fixtures::new(&env).await;
    let (doctor, doctor_token, _) = fixtures
        .verified_doctor("UTC", &every_day("00:00", "24:00"))
        .await;
    let (_, patient_token) = fixtures.patient().await;

    let now = Utc::now();
    let path = format!(
        "/doctors/{doctor}/slots?from={}&to={}",
        rfc3339(now),
        rfc3339(now + TimeDelta::hours(6))
    );
    let slots: Value =
        medflow_tests::wait::eventually(Duration::from_secs(30), "the doctor's slots", || async {
            let response = api.query_get(&patient_token, &path).await;
            if response.status() == StatusCode::OK {
                Some(response.json::<Value>().await.unwrap())
            } else {
                None
            }
        })
        .await;
    let start = slots["slots"][0]["start"].as_str().unwrap().to_owned();
    let response = api
        .command_post(
            &patient_token,
            "/appointments",
            json!({ "doctor_id": doctor.to_string(), "start": start }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let booked: Value = response.json().await.unwrap();
    Consultation {
        env,
        api,
        fixtures,
        doctor,
        doctor_token,
        patient_token,
        appointment_id: booked["appointment_id"].as_str().unwrap().parse().unwrap(),
        start: DateTime::parse_from_rfc3339(&start)
            .unwrap()
            .with_timezone(&Utc),
    }
}

async fn request_token(api: &Api, token: &str, appointment_id: Uuid) -> reqwest::Response {
    api.command_post(
        token,
        &format!("/appointments/{appointment_id}/video-token"),
        json!({}),
    )
    .await
}

#[tokio::test]
async fn tokens_pass_the_livekit_sdk_with_narrow_grants() {
    let visit = consultation().await;
    let key = visit.env.livekit_key.clone();
    let secret = visit.env.livekit_secret.clone();
    let room = VideoTokenIssuer::room_name(visit.appointment_id);
    let window_end = visit.start + TimeDelta::minutes(30 + 15);

    for (token, identity) in [
        (&visit.patient_token, "patient"),
        (&visit.doctor_token, "doctor"),
    ] {
        let response = request_token(&visit.api, token, visit.appointment_id).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let access: Value = response.json().await.unwrap();
        assert_eq!(access["room"], room);
        let claims = verify_with_sdk(access["token"].as_str().unwrap(), &key, &secret)
            .expect("the SDK accepts the token");

        assert_eq!(claims["sub"], identity);
        assert_eq!(claims["name"], identity);
        assert_eq!(claims["iss"], key.as_str());
        assert_eq!(claims["exp"], window_end.timestamp(), "{claims}");
        let video = &claims["video"];
        assert_eq!(video["room"], room);
        assert_eq!(video["roomJoin"], true);
        for grant in [
            "roomCreate",
            "roomList",
            "roomAdmin",
            "roomRecord",
            "ingressAdmin",
            "hidden",
            "recorder",
            "agent",
        ] {
            assert_ne!(video[grant], true, "{grant} granted: {claims}");
        }
        let text = claims.to_string();
        assert!(!text.contains(&visit.appointment_id.simple().to_string()));
    }

    // A token signed for this room is checked against another secret: the SDK rejects it.
    let response = request_token(&visit.api, &visit.patient_token, visit.appointment_id).await;
    let access: Value = response.json().await.unwrap();
    let forged = verify_with_sdk(
        access["token"].as_str().unwrap(),
        &key,
        "another-secret-that-is-long-enough-1234",
    );
    assert!(forged.is_err());
}

#[tokio::test]
async fn tokens_rejected_outside_window_or_party() {
    let visit = consultation().await;

    // Another appointment of the same doctor, three hours ahead: too early, and its
    // token would name its own room, not the first appointment's.
    let (_, later_patient) = visit.fixtures.patient().await;
    let later_start = visit.start + TimeDelta::hours(3);
    let response = visit
        .api
        .command_post(
            &later_patient,
            "/appointments",
            json!({ "doctor_id": visit.doctor.to_string(), "start": rfc3339(later_start) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let later: Value = response.json().await.unwrap();
    let later_id: Uuid = later["appointment_id"].as_str().unwrap().parse().unwrap();
    let response = request_token(&visit.api, &later_patient, later_id).await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(body["type"], "urn:medflow:problem:too-early");

    // The first appointment's patient cannot get a token for the later room.
    let response = request_token(&visit.api, &visit.patient_token, later_id).await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = request_token(&visit.api, &visit.patient_token, visit.appointment_id).await;
    let access: Value = response.json().await.unwrap();
    let claims = verify_with_sdk(
        access["token"].as_str().unwrap(),
        &visit.env.livekit_key,
        &visit.env.livekit_secret,
    )
    .unwrap();
    assert_ne!(
        claims["video"]["room"],
        VideoTokenIssuer::room_name(later_id)
    );

    // A third user gets the same 404 as for a missing appointment.
    let (_, stranger) = visit.fixtures.patient().await;
    let response = request_token(&visit.api, &stranger, visit.appointment_id).await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = request_token(&visit.api, &stranger, Uuid::new_v4()).await;
    expect_problem(response, StatusCode::NOT_FOUND).await;

    // After the window: a command API whose clock is 16 minutes past the slot end.
    let clock = ManualClock::starting_at(visit.start + TimeDelta::minutes(46));
    let mut late_settings = visit.env.command_settings();
    late_settings.session_idle_timeout = Duration::from_secs(3 * 3600);
    let late_api = visit
        .env
        .start_command_api_with_clock(late_settings, clock)
        .await;
    let late = Api::new(&late_api, &visit.api.query);
    let response = request_token(&late, &visit.patient_token, visit.appointment_id).await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(body["type"], "urn:medflow:problem:too-late");

    // A cancelled appointment has no room.
    let response = visit
        .api
        .command_post(
            &later_patient,
            &format!("/appointments/{later_id}/cancellation"),
            json!({ "reason": "plans changed" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = request_token(&visit.api, &later_patient, later_id).await;
    let body = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(body["type"], "urn:medflow:problem:invalid-transition");
}

fn webhook_body(event: &str, id: &str, room: &str, identity: Option<&str>) -> Vec<u8> {
    let mut body = json!({
        "event": event,
        "id": id,
        "createdAt": Utc::now().timestamp().to_string(),
        "room": { "sid": "RM_test", "name": room },
    });
    if let Some(identity) = identity {
        body["participant"] = json!({ "sid": "PA_test", "identity": identity });
    }
    serde_json::to_vec(&body).unwrap()
}

async fn deliver(api: &Api, body: &[u8], authorization: Option<&str>) -> reqwest::Response {
    let mut request = api
        .http
        .post(format!("{}/webhooks/livekit", api.command))
        .header("content-type", "application/webhook+json")
        .body(body.to_vec());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

async fn video_events(env: &TestEnv, appointment_id: Uuid) -> Vec<Value> {
    let client = env.owner_client().await;
    client
        .query(
            "SELECT payload::text FROM events
             WHERE aggregate_type = 'appointment' AND aggregate_id = $1
               AND event_type = 'VideoActivityRecorded' ORDER BY sequence",
            &[&appointment_id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(row.get(0)).unwrap())
        .collect()
}

#[tokio::test]
async fn signed_webhooks_are_recorded_once() {
    let visit = consultation().await;
    let key = visit.env.livekit_key.clone();
    let secret = visit.env.livekit_secret.clone();
    let room = VideoTokenIssuer::room_name(visit.appointment_id);

    let started = webhook_body("room_started", "EV_started", &room, None);
    let authorization = sign_webhook_with_sdk(&started, &key, &secret).unwrap();
    let response = deliver(&visit.api, &started, Some(&authorization)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["outcome"], "recorded");

    // LiveKit retries: the same event id, delivered again and concurrently.
    let joined = webhook_body("participant_joined", "EV_joined", &room, Some("patient"));
    let authorization = sign_webhook_with_sdk(&joined, &key, &secret).unwrap();
    let deliveries = futures::future::join_all(
        (0..10).map(|_| deliver(&visit.api, &joined, Some(&authorization))),
    )
    .await;
    for response in deliveries {
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = deliver(
        &visit.api,
        &started,
        Some(&sign_webhook_with_sdk(&started, &key, &secret).unwrap()),
    )
    .await;
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["outcome"], "duplicate");

    let events = video_events(&visit.env, visit.appointment_id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1]["VideoActivityRecorded"]["activity"],
        json!({ "kind": "participant_joined", "participant": "patient" })
    );

    // Events for rooms MedFlow did not name are accepted and ignored.
    let foreign = webhook_body("room_started", "EV_foreign", "some-other-room", None);
    let authorization = sign_webhook_with_sdk(&foreign, &key, &secret).unwrap();
    let response = deliver(&visit.api, &foreign, Some(&authorization)).await;
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["outcome"], "ignored");
}

#[tokio::test]
async fn forged_webhooks_are_rejected() {
    let visit = consultation().await;
    let key = visit.env.livekit_key.clone();
    let secret = visit.env.livekit_secret.clone();
    let room = VideoTokenIssuer::room_name(visit.appointment_id);
    let body = webhook_body("room_finished", "EV_forged", &room, None);

    let wrong_secret =
        sign_webhook_with_sdk(&body, &key, "a-different-secret-of-enough-length-42").unwrap();
    let other_body = webhook_body("room_finished", "EV_other", &room, None);
    let for_other_body = sign_webhook_with_sdk(&other_body, &key, &secret).unwrap();
    let wrong_issuer = sign_webhook_with_sdk(&body, "APIsomeoneelse", &secret).unwrap();
    // An unsigned token with `alg: none` and otherwise valid claims.
    let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let valid: Value = {
        let token = sign_webhook_with_sdk(&body, &key, &secret).unwrap();
        let payload = token.split('.').nth(1).unwrap().to_owned();
        serde_json::from_slice(&base64_url_decode(&payload)).unwrap()
    };
    let unsigned = format!("{header}.{}.", base64_url(valid.to_string().as_bytes()));

    let cases = [
        ("no authorization", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("wrong secret", Some(wrong_secret)),
        ("hash of another body", Some(for_other_body)),
        ("wrong issuer", Some(wrong_issuer)),
        ("alg none", Some(unsigned)),
    ];
    for (case, authorization) in cases {
        let response = deliver(&visit.api, &body, authorization.as_deref()).await;
        let problem = expect_problem(response, StatusCode::UNAUTHORIZED).await;
        assert!(
            !problem.to_string().contains(&secret),
            "{case}: the secret leaked"
        );
    }
    assert!(video_events(&visit.env, visit.appointment_id)
        .await
        .is_empty());
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
