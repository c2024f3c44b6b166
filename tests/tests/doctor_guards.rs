//! Guards around doctor onboarding: uploads cannot replace an attached document, the
//! file must be of its declared type, suspended profiles keep their schedule, and
//! languages, time off and query parameters are validated.

use medflow_infra::object_store::ObjectStore;
use medflow_tests::api::{expect_problem, unique_email, Api, Login};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn doctor_with_profile(api: &Api) -> Login {
    let email = unique_email("doctor");
    api.register_ok("doctor", &email, "Dr. Guard").await;
    let doctor = api.login_ok(&email).await;
    let profile = json!({
        "display_name": "Dr. Guard Rail",
        "specialty": "dermatology",
        "license_number": "GR-1001",
        "issuing_authority": "Medical Council",
        "biography": "Skin.",
        "time_zone": "Europe/Vienna",
        "languages": ["de"],
    });
    let response = api
        .http
        .put(format!("{}/doctors/me/profile", api.command))
        .bearer_auth(&doctor.token)
        .json(&profile)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    doctor
}

async fn ticket(api: &Api, doctor: &Login, content_type: &str, size: usize) -> Value {
    let body = json!({ "content_type": content_type, "size": size });
    let response = api
        .command_post(&doctor.token, "/doctors/me/license-documents/uploads", body)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn put(ticket: &Value, content_type: &str, body: Vec<u8>) -> StatusCode {
    reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

fn pdf(fill: u8) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.resize(512, fill);
    bytes
}

#[tokio::test]
async fn upload_url_cannot_replace_attached_document() {
    let env = TestEnv::new().await;
    let api = Api::new(&env.start_command_api().await, "");
    let doctor = doctor_with_profile(&api).await;
    let ticket = ticket(&api, &doctor, "application/pdf", 512).await;
    assert_eq!(
        put(&ticket, "application/pdf", pdf(b'a')).await,
        StatusCode::OK
    );
    let attach = json!({ "object_key": ticket["object_key"] });
    let response = api
        .command_post(&doctor.token, "/doctors/me/license-documents", attach)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // The presigned URL is still valid and the store accepts a second upload ...
    assert_eq!(
        put(&ticket, "application/pdf", pdf(b'b')).await,
        StatusCode::OK
    );

    // ... but the attached document lives under another key and keeps its content.
    let payload: String = env
        .owner_client()
        .await
        .query_one(
            "SELECT payload::text FROM events WHERE event_type = 'LicenseDocumentAttached' AND aggregate_id = $1",
            &[&doctor.account_id],
        )
        .await
        .unwrap()
        .get(0);
    let payload: Value = serde_json::from_str(&payload).unwrap();
    let attached = payload["LicenseDocumentAttached"]["document"]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(attached.starts_with("attached/"), "{attached}");
    assert_ne!(attached, ticket["object_key"].as_str().unwrap());
    let store = ObjectStore::new(&env.object_store_settings()).unwrap();
    assert_eq!(store.read_prefix(&attached, 512).await.unwrap(), pdf(b'a'));
}

#[tokio::test]
async fn file_must_match_declared_type() {
    let env = TestEnv::new().await;
    let api = Api::new(&env.start_command_api().await, "");
    let doctor = doctor_with_profile(&api).await;
    let ticket = ticket(&api, &doctor, "image/png", 512).await;
    assert_eq!(put(&ticket, "image/png", pdf(b'a')).await, StatusCode::OK);
    let attach = json!({ "object_key": ticket["object_key"] });
    let response = api
        .command_post(&doctor.token, "/doctors/me/license-documents", attach)
        .await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "object_key");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid image/png file"),
        "{problem}"
    );
}

#[tokio::test]
async fn languages_must_be_iso_639_1() {
    let env = TestEnv::new().await;
    let api = Api::new(&env.start_command_api().await, "");
    let doctor = doctor_with_profile(&api).await;
    let profile = json!({
        "display_name": "Dr. Guard Rail",
        "specialty": "dermatology",
        "license_number": "GR-1001",
        "issuing_authority": "Medical Council",
        "biography": "Skin.",
        "time_zone": "Europe/Vienna",
        "languages": ["de", "zz"],
    });
    let response = api
        .http
        .put(format!("{}/doctors/me/profile", api.command))
        .bearer_auth(&doctor.token)
        .json(&profile)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        problem["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("languages"),
        "{problem}"
    );
}

#[tokio::test]
async fn time_off_range_is_bounded() {
    let env = TestEnv::new().await;
    let api = Api::new(&env.start_command_api().await, "");
    let doctor = doctor_with_profile(&api).await;
    let now = chrono::Utc::now();
    let format =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases = [
        (
            now - chrono::TimeDelta::days(10),
            now - chrono::TimeDelta::days(9),
        ),
        (
            now + chrono::TimeDelta::days(1),
            now + chrono::TimeDelta::days(400),
        ),
        (
            chrono::DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
                .unwrap()
                .to_utc(),
            chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
                .unwrap()
                .to_utc(),
        ),
    ];
    for (start, end) in cases {
        let body = json!({ "start": format(start), "end": format(end) });
        let response = api
            .command_post(&doctor.token, "/doctors/me/time-off", body)
            .await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], "end", "{problem}");
    }
    let body = json!({ "start": format(now + chrono::TimeDelta::days(1)), "end": format(now + chrono::TimeDelta::days(3)) });
    assert_eq!(
        api.command_post(&doctor.token, "/doctors/me/time-off", body)
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn suspended_doctor_cannot_change_schedule() {
    let env = TestEnv::new().await;
    let api = Api::new(&env.start_command_api().await, "");
    let doctor = doctor_with_profile(&api).await;
    let ticket = ticket(&api, &doctor, "application/pdf", 512).await;
    assert_eq!(
        put(&ticket, "application/pdf", pdf(b'a')).await,
        StatusCode::OK
    );
    let attach = json!({ "object_key": ticket["object_key"] });
    assert_eq!(
        api.command_post(&doctor.token, "/doctors/me/license-documents", attach)
            .await
            .status(),
        StatusCode::CREATED
    );
    let submitted = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    assert_eq!(submitted.status(), StatusCode::ACCEPTED);
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let base = format!("/admin/doctors/{}", doctor.account_id);
    assert_eq!(
        api.command_post(&admin.token, &format!("{base}/approval"), json!({}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let reason = json!({ "reason": "complaint under review" });
    assert_eq!(
        api.command_post(&admin.token, &format!("{base}/suspension"), reason)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let windows = json!({ "windows": [{ "weekday": "monday", "start": "09:00", "end": "12:00" }] });
    let response = api
        .http
        .put(format!("{}/doctors/me/availability", api.command))
        .bearer_auth(&doctor.token)
        .json(&windows)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::CONFLICT).await;
    let now = chrono::Utc::now();
    let body = json!({
        "start": (now + chrono::TimeDelta::days(1)).to_rfc3339(),
        "end": (now + chrono::TimeDelta::days(2)).to_rfc3339(),
    });
    expect_problem(
        api.command_post(&doctor.token, "/doctors/me/time-off", body)
            .await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn unknown_query_parameters_are_rejected() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("patient");
    api.register_ok("patient", &email, "Pat Ient").await;
    let patient = api.login_ok(&email).await;
    for path in [
        "/doctors?speciality=dermatology",
        "/doctors?languages=fr",
        "/me?wait=1",
    ] {
        let problem = expect_problem(
            api.query_get(&patient.token, path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{path}: {problem}"
        );
    }
}
