//! Doctor onboarding on the write side: profile, license documents uploaded to the real
//! S3 store, submission, admin decisions, availability and time off. Checks the
//! responses and the events in the event table.

use medflow_tests::api::{expect_problem, unique_email, Api, Login};
use medflow_tests::TestEnv;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

const DISPLAY_NAME: &str = "Dr. Zephyrine Quillfeather";
const LICENSE_NUMBER: &str = "QX-778/41.9";
const BIOGRAPHY: &str = "Trained at the Vatnajokull teaching hospital; twenty years in cardiology.";
const MIB: u64 = 1024 * 1024;

/// Starts only the command API: nothing here reads through the query API.
async fn start() -> (TestEnv, Api) {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let api = Api::new(&command, "");
    (env, api)
}

async fn register(api: &Api, role: &str, label: &str) -> Login {
    let email = unique_email(label);
    api.register_ok(role, &email, "Casey Example").await;
    api.login_ok(&email).await
}

async fn login_admin(env: &TestEnv, api: &Api) -> Login {
    let email = unique_email("admin");
    env.create_admin(&email).await;
    api.login_ok(&email).await
}

fn profile_body() -> Value {
    json!({
        "display_name": DISPLAY_NAME,
        "specialty": "cardiology",
        "license_number": LICENSE_NUMBER,
        "issuing_authority": "Directorate of Health",
        "biography": BIOGRAPHY,
        "time_zone": "Atlantic/Reykjavik",
        "languages": ["is", "en"],
    })
}

async fn put_json(api: &Api, token: &str, path: &str, body: Value) -> Response {
    api.http
        .put(format!("{}{path}", api.command))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("command API reachable")
}

/// Reads a JSON response, asserting its status.
async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(actual, status, "unexpected status; body {body}");
    body
}

/// Reads a 422 problem and asserts that it names `field`.
async fn expect_invalid_field(response: Response, field: &str) -> Value {
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields = problem_fields(&problem);
    assert!(
        fields.iter().any(|named| named == field),
        "expected {field} among {fields:?}; problem {problem}"
    );
    problem
}

fn problem_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| error["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn save_profile(api: &Api, doctor: &Login) -> Value {
    let response = put_json(api, &doctor.token, "/doctors/me/profile", profile_body()).await;
    expect_json(response, StatusCode::OK).await
}

async fn upload_ticket(api: &Api, doctor: &Login, content_type: &str, size: u64) -> Response {
    api.command_post(
        &doctor.token,
        "/doctors/me/license-documents/uploads",
        json!({ "content_type": content_type, "size": size }),
    )
    .await
}

/// Returns a file of `size` bytes that starts like a PDF.
fn pdf(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.resize(size, b'%');
    bytes
}

/// Returns a file of `size` bytes that starts like a JPEG.
fn jpeg(size: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.resize(size, 0);
    bytes
}

/// Sends `body` to the store with the ticket's URL, method and headers.
async fn upload(api: &Api, ticket: &Value, body: Vec<u8>) -> StatusCode {
    assert_eq!(ticket["method"], "PUT");
    let mut request = api.http.put(ticket["url"].as_str().unwrap());
    for (name, value) in ticket["headers"].as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    request
        .body(body)
        .send()
        .await
        .expect("S3 store reachable")
        .status()
}

async fn attach(api: &Api, doctor: &Login, object_key: &str) -> Response {
    api.command_post(
        &doctor.token,
        "/doctors/me/license-documents",
        json!({ "object_key": object_key }),
    )
    .await
}

/// Uploads a 2 KiB PDF and attaches it; returns the response body of the attach.
async fn attach_new_document(api: &Api, doctor: &Login) -> Value {
    let ticket = expect_json(
        upload_ticket(api, doctor, "application/pdf", 2048).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(upload(api, &ticket, pdf(2048)).await, StatusCode::OK);
    let object_key = ticket["object_key"].as_str().unwrap();
    expect_json(attach(api, doctor, object_key).await, StatusCode::CREATED).await
}

/// A doctor event as stored, with its payload as JSON text.
struct StoredEvent {
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: Value,
}

async fn doctor_events(env: &TestEnv, doctor_id: &str) -> Vec<StoredEvent> {
    env.owner_client()
        .await
        .query(
            "SELECT sequence, event_type, payload::text, metadata::text FROM events
             WHERE aggregate_type = 'doctor' AND aggregate_id = $1 ORDER BY sequence",
            &[&doctor_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| StoredEvent {
            sequence: row.get(0),
            event_type: row.get(1),
            payload: row.get(2),
            metadata: serde_json::from_str(row.get::<_, &str>(3)).unwrap(),
        })
        .collect()
}

fn event_types(events: &[StoredEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect()
}

#[tokio::test]
async fn onboarding_flow_records_sealed_events() {
    let (env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;
    let admin = login_admin(&env, &api).await;

    let saved = save_profile(&api, &doctor).await;
    assert_eq!(saved["aggregate_id"], doctor.account_id.as_str());
    assert_eq!(saved["sequence"], 1);

    let ticket = expect_json(
        upload_ticket(&api, &doctor, "application/pdf", 4096).await,
        StatusCode::OK,
    )
    .await;
    let object_key = ticket["object_key"].as_str().unwrap();
    let prefix = format!("licenses/{}/", doctor.account_id);
    assert!(object_key.starts_with(&prefix), "{ticket}");
    assert_eq!(ticket["headers"]["content-type"], "application/pdf");
    assert_eq!(ticket["headers"]["content-length"], "4096");
    assert!(ticket["expires_at"].is_string(), "{ticket}");
    assert_eq!(
        doctor_events(&env, &doctor.account_id).await.len(),
        1,
        "issuing an upload URL wrote an event"
    );

    assert_eq!(upload(&api, &ticket, pdf(4096)).await, StatusCode::OK);
    let attached = expect_json(attach(&api, &doctor, object_key).await, StatusCode::CREATED).await;
    assert_eq!(attached["sequence"], 2);
    let document_id = attached["document_id"].as_str().unwrap().to_owned();

    let submitted = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    assert_eq!(
        expect_json(submitted, StatusCode::ACCEPTED).await["sequence"],
        3
    );

    let approval = format!("/admin/doctors/{}/approval", doctor.account_id);
    let approved = api.command_post(&admin.token, &approval, json!({})).await;
    assert_eq!(
        expect_json(approved, StatusCode::ACCEPTED).await["sequence"],
        4
    );

    let events = doctor_events(&env, &doctor.account_id).await;
    assert_eq!(
        event_types(&events),
        [
            "ProfileUpdated",
            "LicenseDocumentAttached",
            "SubmittedForVerification",
            "DoctorVerified"
        ]
    );
    for event in &events {
        for secret in [
            DISPLAY_NAME,
            "Quillfeather",
            LICENSE_NUMBER,
            BIOGRAPHY,
            "Vatnajokull",
        ] {
            assert!(
                !event.payload.contains(secret),
                "event {} contains {secret:?} in clear: {}",
                event.sequence,
                event.payload
            );
        }
    }

    let profile: Value = serde_json::from_str(&events[0].payload).unwrap();
    let details = &profile["ProfileUpdated"]["details"];
    assert_eq!(details["specialty"], "cardiology");
    assert_eq!(details["issuing_authority"], "Directorate of Health");
    assert_eq!(details["time_zone"], "Atlantic/Reykjavik");
    assert_eq!(details["languages"], json!(["is", "en"]));
    assert_eq!(details["name_tokens"].as_array().unwrap().len(), 3);
    assert!(
        details["display_name"]["ciphertext"].is_string(),
        "{details}"
    );
    assert!(
        details["license_number"]["ciphertext"].is_string(),
        "{details}"
    );
    assert!(details["biography"]["ciphertext"].is_string(), "{details}");

    let document: Value = serde_json::from_str(&events[1].payload).unwrap();
    let document = &document["LicenseDocumentAttached"]["document"];
    assert_eq!(document["document_id"], document_id.as_str());
    // The document is stored under a copy that no upload URL can overwrite.
    let attached_key = format!("attached/{object_key}/{document_id}");
    assert_eq!(document["object_key"], attached_key.as_str());
    assert_eq!(document["content_type"], "application/pdf");
    assert_eq!(document["size"], 4096);

    assert_eq!(events[0].metadata["actor_id"], doctor.account_id.as_str());
    assert_eq!(events[0].metadata["actor_role"], "doctor");
    assert_eq!(events[3].metadata["actor_id"], admin.account_id.as_str());
    assert_eq!(events[3].metadata["actor_role"], "admin");
    let verified: Value = serde_json::from_str(&events[3].payload).unwrap();
    assert_eq!(
        verified["DoctorVerified"]["verified_by"],
        admin.account_id.as_str()
    );
}

#[tokio::test]
async fn profile_rejects_invalid_fields() {
    let (_env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("time_zone", json!("Mars/Olympus_Mons"), "time_zone"),
        ("specialty", json!("astrology"), "specialty"),
        ("languages", json!(["eng"]), "languages[0]"),
        ("languages", json!(["en", "de", "EN"]), "languages[2]"),
        ("languages", json!([]), "languages"),
        ("languages", json!(["en", 7]), "languages[1]"),
        ("biography", json!("b".repeat(2001)), "biography"),
        ("license_number", json!("QX#778"), "license_number"),
        ("license_number", json!("Q1"), "license_number"),
        ("display_name", json!(""), "display_name"),
        ("display_name", json!("n".repeat(101)), "display_name"),
        ("display_name", json!("Dr.\u{7} Bell"), "display_name"),
        ("issuing_authority", json!("X"), "issuing_authority"),
    ];
    for (key, value, field) in cases {
        let mut body = profile_body();
        body[key] = value.clone();
        let response = put_json(&api, &doctor.token, "/doctors/me/profile", body).await;
        let problem = expect_invalid_field(response, field).await;
        assert_eq!(
            problem_fields(&problem),
            [field],
            "{key} = {value} named other fields too"
        );
    }

    // Every bad field is reported at once, and sealed values are never echoed.
    let mut body = profile_body();
    body["license_number"] = json!("SECRET#LICENSE");
    body["biography"] = json!(format!("SECRETBIO{}", "b".repeat(2000)));
    body["time_zone"] = json!("Nowhere/City");
    body["languages"] = json!(["en", "en"]);
    let response = put_json(&api, &doctor.token, "/doctors/me/profile", body).await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields = problem_fields(&problem);
    fields.sort();
    assert_eq!(
        fields,
        ["biography", "languages[1]", "license_number", "time_zone"]
    );
    let text = problem.to_string();
    assert!(
        !text.contains("SECRET"),
        "a sealed value was echoed: {text}"
    );

    // Nothing was written by any rejected request.
    let response = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn document_uploads_reject_bad_input() {
    let (env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;
    let other = register(&api, "doctor", "other").await;

    // No upload URL before the profile exists.
    let response = upload_ticket(&api, &doctor, "application/pdf", 1024).await;
    let problem = expect_problem(response, StatusCode::NOT_FOUND).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("profile"),
        "{problem}"
    );
    save_profile(&api, &doctor).await;
    save_profile(&api, &other).await;

    let response = upload_ticket(&api, &doctor, "text/plain", 1024).await;
    let problem = expect_invalid_field(response, "content_type").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("application/pdf"),
        "{problem}"
    );
    expect_invalid_field(
        upload_ticket(&api, &doctor, "application/pdf", 0).await,
        "size",
    )
    .await;
    expect_invalid_field(
        upload_ticket(&api, &doctor, "image/png", 20 * MIB).await,
        "size",
    )
    .await;
    let response = api
        .command_post(
            &doctor.token,
            "/doctors/me/license-documents/uploads",
            json!({ "content_type": "image/jpeg", "size": -5 }),
        )
        .await;
    expect_invalid_field(response, "size").await;

    // Another doctor's object cannot be attached, even after a real upload.
    let foreign = expect_json(
        upload_ticket(&api, &other, "image/png", 512).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(upload(&api, &foreign, vec![7; 512]).await, StatusCode::OK);
    let foreign_key = foreign["object_key"].as_str().unwrap();
    expect_invalid_field(attach(&api, &doctor, foreign_key).await, "object_key").await;
    expect_invalid_field(attach(&api, &doctor, "licenses/x/../y").await, "object_key").await;

    // A ticket whose upload never happened.
    let unused = expect_json(
        upload_ticket(&api, &doctor, "application/pdf", 1024).await,
        StatusCode::OK,
    )
    .await;
    let problem = expect_invalid_field(
        attach(&api, &doctor, unused["object_key"].as_str().unwrap()).await,
        "object_key",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not been uploaded"),
        "{problem}"
    );

    // An upload of another size than declared is rejected by the store, so there is
    // still nothing to attach.
    let declared = expect_json(
        upload_ticket(&api, &doctor, "application/pdf", 1024).await,
        StatusCode::OK,
    )
    .await;
    let wrong_size = api
        .http
        .put(declared["url"].as_str().unwrap())
        .header("content-type", "application/pdf")
        .body(pdf(2048))
        .send()
        .await
        .expect("S3 store reachable");
    assert_eq!(wrong_size.status(), StatusCode::FORBIDDEN);
    let problem = expect_invalid_field(
        attach(&api, &doctor, declared["object_key"].as_str().unwrap()).await,
        "object_key",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not been uploaded"),
        "{problem}"
    );

    // The same object cannot be attached twice.
    let ticket = expect_json(
        upload_ticket(&api, &doctor, "image/jpeg", 256).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(upload(&api, &ticket, jpeg(256)).await, StatusCode::OK);
    let key = ticket["object_key"].as_str().unwrap();
    expect_json(attach(&api, &doctor, key).await, StatusCode::CREATED).await;
    expect_problem(attach(&api, &doctor, key).await, StatusCode::CONFLICT).await;

    let events = doctor_events(&env, &doctor.account_id).await;
    assert_eq!(
        event_types(&events),
        ["ProfileUpdated", "LicenseDocumentAttached"]
    );
}

#[tokio::test]
async fn availability_and_time_off_are_recorded() {
    let (env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;

    let windows = json!({ "windows": [
        { "weekday": "monday", "start": "09:00", "end": "17:00" },
        { "weekday": "friday", "start": "22:30", "end": "02:00" },
    ]});
    let response = put_json(
        &api,
        &doctor.token,
        "/doctors/me/availability",
        windows.clone(),
    )
    .await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
    save_profile(&api, &doctor).await;

    let response = put_json(&api, &doctor.token, "/doctors/me/availability", windows).await;
    assert_eq!(expect_json(response, StatusCode::OK).await["sequence"], 2);

    let time_off = json!({ "start": "2026-12-24T00:00:00Z", "end": "2026-12-27T00:00:00+01:00" });
    let response = api
        .command_post(&doctor.token, "/doctors/me/time-off", time_off)
        .await;
    let added = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(added["sequence"], 3);
    assert_eq!(added["affected_appointments"], json!([]));
    let time_off_id = added["time_off_id"].as_str().unwrap().to_owned();

    let path = format!("/doctors/me/time-off/{time_off_id}");
    let removed = api.command_delete(&doctor.token, &path).await;
    assert_eq!(
        expect_json(removed, StatusCode::ACCEPTED).await["sequence"],
        4
    );
    let again = api.command_delete(&doctor.token, &path).await;
    expect_problem(again, StatusCode::NOT_FOUND).await;

    let events = doctor_events(&env, &doctor.account_id).await;
    assert_eq!(
        event_types(&events),
        [
            "ProfileUpdated",
            "WeeklyAvailabilitySet",
            "TimeOffAdded",
            "TimeOffRemoved"
        ]
    );
    let weekly: Value = serde_json::from_str(&events[1].payload).unwrap();
    assert_eq!(
        weekly["WeeklyAvailabilitySet"]["weekly"][1],
        json!({ "weekday": "friday", "start": "22:30", "end": "02:00" })
    );
    let added: Value = serde_json::from_str(&events[2].payload).unwrap();
    assert_eq!(
        added["TimeOffAdded"]["range"],
        json!({ "start": "2026-12-24T00:00:00Z", "end": "2026-12-26T23:00:00Z" })
    );
}

#[tokio::test]
async fn availability_rejects_bad_input() {
    let (_env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;
    save_profile(&api, &doctor).await;

    let cases = [
        (
            json!([{ "weekday": "monday", "start": "25:00", "end": "26:00" }]),
            "windows[0].start",
        ),
        (
            json!([
                { "weekday": "monday", "start": "09:00", "end": "12:00" },
                { "weekday": "monday", "start": "11:30", "end": "14:00" },
            ]),
            "windows[1]",
        ),
        (
            json!([{ "weekday": "Funday", "start": "09:00", "end": "12:00" }]),
            "windows[0].weekday",
        ),
        (
            json!([{ "weekday": "monday", "start": "09:00" }]),
            "windows[0].end",
        ),
        (
            json!([{ "weekday": "monday", "start": "09:00", "end": "12:00", "room": 4 }]),
            "windows[0].room",
        ),
        (json!("monday 09:00-12:00"), "windows"),
    ];
    for (windows, field) in cases {
        let body = json!({ "windows": windows });
        let response = put_json(&api, &doctor.token, "/doctors/me/availability", body).await;
        expect_invalid_field(response, field).await;
    }

    let backwards = json!({ "start": "2026-05-02T10:00:00Z", "end": "2026-05-02T09:00:00Z" });
    let response = api
        .command_post(&doctor.token, "/doctors/me/time-off", backwards)
        .await;
    expect_invalid_field(response, "end").await;
    let malformed = json!({ "start": "next tuesday", "end": "2026-05-02T09:00:00Z" });
    let response = api
        .command_post(&doctor.token, "/doctors/me/time-off", malformed)
        .await;
    expect_invalid_field(response, "start").await;

    let unknown = format!("/doctors/me/time-off/{}", uuid::Uuid::new_v4());
    let problem = expect_problem(
        api.command_delete(&doctor.token, &unknown).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("time off"),
        "{problem}"
    );
    let response = api
        .command_delete(&doctor.token, "/doctors/me/time-off/not-a-uuid")
        .await;
    expect_invalid_field(response, "time_off_id").await;
}

#[tokio::test]
async fn doctor_endpoints_check_roles() {
    let (env, api) = start().await;
    let patient = register(&api, "patient", "patient").await;
    let doctor = register(&api, "doctor", "doctor").await;
    let admin = login_admin(&env, &api).await;
    save_profile(&api, &doctor).await;

    // Patients and admins cannot use a doctor's own endpoints.
    for caller in [&patient, &admin] {
        let token = &caller.token;
        let responses = [
            put_json(&api, token, "/doctors/me/profile", profile_body()).await,
            api.command_post(
                token,
                "/doctors/me/license-documents/uploads",
                json!({ "content_type": "application/pdf", "size": 10 }),
            )
            .await,
            api.command_post(
                token,
                "/doctors/me/license-documents",
                json!({ "object_key": "licenses/x/y" }),
            )
            .await,
            api.command_post(token, "/doctors/me/submission", json!({}))
                .await,
            put_json(
                &api,
                token,
                "/doctors/me/availability",
                json!({ "windows": [] }),
            )
            .await,
            api.command_post(
                token,
                "/doctors/me/time-off",
                json!({ "start": "2026-05-02T09:00:00Z", "end": "2026-05-02T10:00:00Z" }),
            )
            .await,
            api.command_delete(
                token,
                &format!("/doctors/me/time-off/{}", uuid::Uuid::new_v4()),
            )
            .await,
        ];
        for response in responses {
            let path = response.url().path().to_owned();
            let problem = expect_problem(response, StatusCode::FORBIDDEN).await;
            assert!(
                problem["detail"].as_str().unwrap().contains("doctor"),
                "{path}: {problem}"
            );
        }
    }

    // Doctors cannot decide on doctor profiles, not even their own.
    let base = format!("/admin/doctors/{}", doctor.account_id);
    let reason = json!({ "reason": "looks fine to me" });
    let responses = [
        api.command_post(&doctor.token, &format!("{base}/approval"), json!({}))
            .await,
        api.command_post(&doctor.token, &format!("{base}/rejection"), reason.clone())
            .await,
        api.command_post(&doctor.token, &format!("{base}/suspension"), reason)
            .await,
        api.command_delete(&doctor.token, &format!("{base}/suspension"))
            .await,
    ];
    for response in responses {
        expect_problem(response, StatusCode::FORBIDDEN).await;
    }

    // Without a session: 401. With another method: 405 naming the allowed ones.
    let anonymous = api
        .http
        .put(format!("{}/doctors/me/profile", api.command))
        .json(&profile_body())
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    for (path, allowed) in [
        ("/doctors/me/profile", "PUT"),
        ("/doctors/me/license-documents", "POST"),
        ("/doctors/me/time-off", "POST"),
        ("/admin/doctors/x/suspension", "POST, DELETE"),
    ] {
        let response = api
            .http
            .patch(format!("{}{path}", api.command))
            .bearer_auth(&doctor.token)
            .send()
            .await
            .unwrap();
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(allow, allowed, "{path}");
    }

    let events = doctor_events(&env, &doctor.account_id).await;
    assert_eq!(event_types(&events), ["ProfileUpdated"]);
}

#[tokio::test]
async fn verification_follows_the_profile_states() {
    let (env, api) = start().await;
    let doctor = register(&api, "doctor", "doctor").await;
    let admin = login_admin(&env, &api).await;
    let base = format!("/admin/doctors/{}", doctor.account_id);
    let approval = format!("{base}/approval");
    let rejection = format!("{base}/rejection");
    let suspension = format!("{base}/suspension");

    // Nothing to decide on before the doctor saved a profile.
    let unknown = format!("/admin/doctors/{}/approval", uuid::Uuid::new_v4());
    expect_problem(
        api.command_post(&admin.token, &unknown, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_invalid_field(
        api.command_post(&admin.token, "/admin/doctors/nobody/approval", json!({}))
            .await,
        "doctor_id",
    )
    .await;
    expect_problem(
        api.command_post(&admin.token, &approval, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A draft cannot be approved, and cannot be submitted without a document.
    save_profile(&api, &doctor).await;
    let problem = expect_problem(
        api.command_post(&admin.token, &approval, json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("draft"),
        "{problem}"
    );
    let problem = expect_problem(
        api.command_post(&doctor.token, "/doctors/me/submission", json!({}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("license document"),
        "{problem}"
    );

    attach_new_document(&api, &doctor).await;
    let submitted = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    expect_json(submitted, StatusCode::ACCEPTED).await;
    let approved = api.command_post(&admin.token, &approval, json!({})).await;
    expect_json(approved, StatusCode::ACCEPTED).await;

    // A new license number sends the verified profile back to review.
    let mut changed = profile_body();
    changed["license_number"] = json!("QX-778/41.10");
    let response = put_json(&api, &doctor.token, "/doctors/me/profile", changed).await;
    assert_eq!(expect_json(response, StatusCode::OK).await["sequence"], 6);

    // The admin rejects the change with a reason, the doctor submits again, and the
    // admin approves.
    expect_invalid_field(
        api.command_post(&admin.token, &rejection, json!({ "reason": "  " }))
            .await,
        "reason",
    )
    .await;
    let rejection_reason = "Registry lists Zephyrine under another number";
    let rejected = api
        .command_post(
            &admin.token,
            &rejection,
            json!({ "reason": rejection_reason }),
        )
        .await;
    expect_json(rejected, StatusCode::ACCEPTED).await;
    let resubmitted = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    expect_json(resubmitted, StatusCode::ACCEPTED).await;
    let approved = api.command_post(&admin.token, &approval, json!({})).await;
    expect_json(approved, StatusCode::ACCEPTED).await;

    // Suspension blocks profile edits until the admin reinstates the doctor.
    let suspension_reason = "Complaint by Zephyrine's clinic under review";
    let suspended = api
        .command_post(
            &admin.token,
            &suspension,
            json!({ "reason": suspension_reason }),
        )
        .await;
    expect_json(suspended, StatusCode::ACCEPTED).await;
    let response = put_json(&api, &doctor.token, "/doctors/me/profile", profile_body()).await;
    expect_problem(response, StatusCode::CONFLICT).await;
    let response = upload_ticket(&api, &doctor, "application/pdf", 1024).await;
    expect_problem(response, StatusCode::CONFLICT).await;
    let reinstated = api.command_delete(&admin.token, &suspension).await;
    assert_eq!(
        expect_json(reinstated, StatusCode::ACCEPTED).await["sequence"],
        11
    );
    let again = api.command_delete(&admin.token, &suspension).await;
    expect_problem(again, StatusCode::CONFLICT).await;

    let events = doctor_events(&env, &doctor.account_id).await;
    assert_eq!(
        event_types(&events),
        [
            "ProfileUpdated",
            "LicenseDocumentAttached",
            "SubmittedForVerification",
            "DoctorVerified",
            "ProfileUpdated",
            "ReturnedForReview",
            "DoctorRejected",
            "SubmittedForVerification",
            "DoctorVerified",
            "DoctorSuspended",
            "DoctorReinstated",
        ]
    );
    let returned: Value = serde_json::from_str(&events[5].payload).unwrap();
    assert_eq!(returned["ReturnedForReview"]["trigger"], "license_changed");
    assert_eq!(events[5].metadata["actor_id"], doctor.account_id.as_str());
    for event in &events[6..] {
        assert!(
            !event.payload.contains("Zephyrine"),
            "event {} contains a reason in clear: {}",
            event.sequence,
            event.payload
        );
    }
    for index in [6, 8, 9, 10] {
        assert_eq!(
            events[index].metadata["actor_id"],
            admin.account_id.as_str(),
            "event {}",
            events[index].sequence
        );
    }
}

#[tokio::test]
async fn openapi_lists_doctor_endpoints() {
    let (_env, api) = start().await;
    let document: Value = api
        .http
        .get(format!("{}/openapi.json", api.command))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &document["paths"];
    for (path, method, problem_status) in [
        ("/doctors/me/profile", "put", "422"),
        ("/doctors/me/submission", "post", "409"),
        ("/doctors/me/license-documents/uploads", "post", "422"),
        ("/doctors/me/license-documents", "post", "503"),
        ("/doctors/me/availability", "put", "422"),
        ("/doctors/me/time-off", "post", "422"),
        ("/doctors/me/time-off/{time_off_id}", "delete", "404"),
        ("/admin/doctors/{doctor_id}/approval", "post", "409"),
        ("/admin/doctors/{doctor_id}/rejection", "post", "422"),
        ("/admin/doctors/{doctor_id}/suspension", "post", "409"),
        ("/admin/doctors/{doctor_id}/suspension", "delete", "409"),
    ] {
        let responses = &paths[path][method]["responses"];
        assert!(
            responses["403"]["content"]["application/problem+json"].is_object(),
            "{method} {path} lacks a 403 problem: {responses}"
        );
        assert!(
            responses[problem_status]["content"]["application/problem+json"].is_object(),
            "{method} {path} lacks a {problem_status} problem: {responses}"
        );
    }
}
