//! Video tokens and webhook verification checked against LiveKit's own Node.js server SDK.
//! These tests need Node.js and `livekit-server-sdk` (scripts/install-deps.sh) but no
//! running stack.

use chrono::{Duration, Utc};
use medflow_infra::video::{
    LiveKitSettings, Participant, VideoTokenIssuer, WebhookKind, WebhookRejection, WebhookVerifier,
};
use medflow_tests::livekit::{sign_webhook_with_sdk, verify_with_sdk};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Settings with a fresh random API key and a 48-character secret.
fn random_settings() -> LiveKitSettings {
    let mut rng = rand::thread_rng();
    LiveKitSettings {
        url: "wss://video.medflow.test".to_owned(),
        api_key: format!("API{}", Alphanumeric.sample_string(&mut rng, 12)),
        api_secret: SecretString::from(Alphanumeric.sample_string(&mut rng, 48)),
    }
}

fn secret(settings: &LiveKitSettings) -> &str {
    settings.api_secret.expose_secret()
}

/// Builds a webhook body shaped like the ones a LiveKit server sends, in protobuf JSON
/// with int64 values as strings and with fields MedFlow does not read.
fn webhook_body(event: &str, room: &str, identity: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "event": event,
        "room": {
            "sid": "RM_hycBMAjmt6Ub",
            "name": room,
            "emptyTimeout": 300,
            "creationTime": "1767225600",
            "enabledCodecs": [{"mime": "audio/opus"}, {"mime": "video/VP8"}],
        },
        "id": "EV_3sbcq7gR8ysV",
        "createdAt": "1767225605",
    });
    if let Some(identity) = identity {
        body["participant"] = serde_json::json!({
            "sid": "PA_Ldcxma7Fs3Jt",
            "identity": identity,
            "state": "ACTIVE",
            "joinedAt": "1767225604",
        });
    }
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn sdk_accepts_issued_token() {
    let settings = random_settings();
    let issuer = VideoTokenIssuer::new(&settings).unwrap();
    let appointment_id = Uuid::new_v4();
    let now = Utc::now();
    let expires_at = now + Duration::minutes(55);

    for participant in [Participant::Patient, Participant::Doctor] {
        let token = issuer
            .issue(appointment_id, participant, now, expires_at)
            .unwrap();

        let claims = verify_with_sdk(&token.token, &settings.api_key, secret(&settings)).unwrap();

        let identity = participant.identity();
        assert_eq!(claims["iss"], settings.api_key.as_str());
        assert_eq!(claims["sub"], identity);
        assert_eq!(claims["name"], identity);
        assert_eq!(claims["exp"], expires_at.timestamp());
        assert_eq!(claims["exp"], token.expires_at.timestamp());
        assert!(
            claims["nbf"].as_i64().unwrap() <= now.timestamp(),
            "{claims}"
        );
        assert_eq!(
            claims["video"],
            serde_json::json!({
                "roomJoin": true,
                "room": format!("appointment-{appointment_id}"),
                "canPublish": true,
                "canSubscribe": true,
                "canPublishData": true,
                "canPublishSources": ["camera", "microphone"],
                "canUpdateOwnMetadata": false,
            }),
            "{participant:?}"
        );
        assert_eq!(token.room, format!("appointment-{appointment_id}"));
        assert_eq!(token.identity, identity);
        assert_eq!(token.url, settings.url);
    }
}

#[test]
fn sdk_token_contains_no_other_claims() {
    let settings = random_settings();
    let issuer = VideoTokenIssuer::new(&settings).unwrap();
    let now = Utc::now();
    let token = issuer
        .issue(
            Uuid::new_v4(),
            Participant::Patient,
            now,
            now + Duration::minutes(5),
        )
        .unwrap();

    let claims = verify_with_sdk(&token.token, &settings.api_key, secret(&settings)).unwrap();

    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["exp", "iss", "name", "nbf", "sub", "video"]);
}

#[test]
fn sdk_rejects_token_with_other_secret() {
    let settings = random_settings();
    let other = random_settings();
    let issuer = VideoTokenIssuer::new(&settings).unwrap();
    let now = Utc::now();
    let token = issuer
        .issue(
            Uuid::new_v4(),
            Participant::Doctor,
            now,
            now + Duration::minutes(5),
        )
        .unwrap();

    let result = verify_with_sdk(&token.token, &settings.api_key, secret(&other));

    let error = result.unwrap_err().to_string();
    assert!(error.contains("verification failed"), "{error}");
}

#[test]
fn sdk_rejects_token_for_other_key() {
    let settings = random_settings();
    let other = random_settings();
    let issuer = VideoTokenIssuer::new(&settings).unwrap();
    let now = Utc::now();
    let token = issuer
        .issue(
            Uuid::new_v4(),
            Participant::Doctor,
            now,
            now + Duration::minutes(5),
        )
        .unwrap();

    let result = verify_with_sdk(&token.token, &other.api_key, secret(&settings));

    assert!(result.is_err());
}

#[test]
fn sdk_rejects_expired_token() {
    let settings = random_settings();
    let issuer = VideoTokenIssuer::new(&settings).unwrap();
    let now = Utc::now() - Duration::hours(2);
    let token = issuer
        .issue(
            Uuid::new_v4(),
            Participant::Patient,
            now,
            now + Duration::minutes(55),
        )
        .unwrap();

    let result = verify_with_sdk(&token.token, &settings.api_key, secret(&settings));

    let error = result.unwrap_err().to_string();
    assert!(error.contains("verification failed"), "{error}");
}

#[test]
fn verifier_accepts_sdk_signed_webhook() {
    let settings = random_settings();
    let appointment_id = Uuid::new_v4();
    let room = VideoTokenIssuer::room_name(appointment_id);
    let body = webhook_body("participant_joined", &room, Some("patient"));
    let authorization = sign_webhook_with_sdk(&body, &settings.api_key, secret(&settings)).unwrap();

    let notice = WebhookVerifier::new(&settings)
        .verify(&body, Some(&authorization))
        .unwrap();

    assert_eq!(notice.event_id, "EV_3sbcq7gR8ysV");
    assert_eq!(notice.kind, WebhookKind::ParticipantJoined);
    assert_eq!(notice.room, Some(room));
    assert_eq!(notice.appointment_id, Some(appointment_id));
    assert_eq!(notice.participant, Some(Participant::Patient));
    assert_eq!(notice.created_at.unwrap().timestamp(), 1_767_225_605);
}

#[test]
fn verifier_accepts_sdk_webhook_as_bearer() {
    let settings = random_settings();
    let body = webhook_body("room_finished", "appointment-x", None);
    let token = sign_webhook_with_sdk(&body, &settings.api_key, secret(&settings)).unwrap();

    let notice = WebhookVerifier::new(&settings)
        .verify(&body, Some(&format!("Bearer {token}")))
        .unwrap();

    assert_eq!(notice.kind, WebhookKind::RoomFinished);
    assert_eq!(notice.appointment_id, None);
    assert_eq!(notice.participant, None);
}

#[test]
fn verifier_rejects_tampered_sdk_webhook() {
    let settings = random_settings();
    let room = VideoTokenIssuer::room_name(Uuid::new_v4());
    let body = webhook_body("room_started", &room, None);
    let authorization = sign_webhook_with_sdk(&body, &settings.api_key, secret(&settings)).unwrap();
    let other_room = VideoTokenIssuer::room_name(Uuid::new_v4());
    let tampered = webhook_body("room_started", &other_room, None);

    let result = WebhookVerifier::new(&settings).verify(&tampered, Some(&authorization));

    assert_eq!(result, Err(WebhookRejection::BodyHashMismatch));
}

#[test]
fn verifier_rejects_sdk_webhook_with_other_secret() {
    let settings = random_settings();
    let other = random_settings();
    let body = webhook_body("room_started", "appointment-x", None);
    let authorization = sign_webhook_with_sdk(&body, &settings.api_key, secret(&other)).unwrap();

    let result = WebhookVerifier::new(&settings).verify(&body, Some(&authorization));

    assert!(
        matches!(result, Err(WebhookRejection::InvalidSignature(_))),
        "{result:?}"
    );
}

#[test]
fn verifier_rejects_sdk_webhook_from_other_key() {
    let settings = random_settings();
    let other = random_settings();
    let body = webhook_body("room_started", "appointment-x", None);
    let authorization = sign_webhook_with_sdk(&body, &other.api_key, secret(&settings)).unwrap();

    let result = WebhookVerifier::new(&settings).verify(&body, Some(&authorization));

    assert!(
        matches!(result, Err(WebhookRejection::InvalidSignature(_))),
        "{result:?}"
    );
}
