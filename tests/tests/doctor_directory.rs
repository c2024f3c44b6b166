//! The read side of doctor onboarding: directory, slots across time zones and DST, the
//! verification queue with license document downloads, and the doctor's own profile.
//! Doctor events are written through the command bus, as the command API would.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use medflow_domain::availability::{DoctorTimeZone, RawWindow, TimeRange, WeeklyAvailability};
use medflow_domain::doctor::{
    DoctorCommand, DoctorProfile, Language, LicenseDocument, ProfileDetails, Specialty,
};
use medflow_domain::values::AccountId;
use medflow_infra::clock::ManualClock;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_infra::event_store::{CommandBus, EventMetadata};
use medflow_infra::object_store::ObjectStore;
use medflow_tests::api::{expect_problem, unique_email, Api};
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;

/// Writes doctor events with real sealing, like the command API.
struct DoctorWriter {
    bus: CommandBus<DoctorProfile>,
    keys: KeyRing,
    index: BlindIndex,
}

fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: "doctor-directory-test".into(),
        session_id: None,
    }
}

impl DoctorWriter {
    async fn new(env: &TestEnv) -> Self {
        let url = SecretString::from(env.app_url());
        let pool = medflow_infra::db::pg_pool(&url, 4).unwrap();
        let masters = MasterKeys::parse(&SecretString::from(env.master_keys.clone())).unwrap();
        Self {
            bus: CommandBus::new(medflow_infra::db::sqlx_pool(&url, 4).await.unwrap(), ()),
            keys: KeyRing::new(pool, masters),
            index: BlindIndex::from_base64(&SecretString::from(env.index_key.clone())).unwrap(),
        }
    }

    async fn details(
        &self,
        doctor: AccountId,
        name: &str,
        specialty: &str,
        zone: &str,
        languages: &[&str],
    ) -> ProfileDetails {
        let seal = |field: &'static str, text: String| async move {
            self.keys
                .seal(doctor.0, field, text.as_bytes())
                .await
                .unwrap()
        };
        ProfileDetails {
            display_name: seal("doctor_display_name", name.to_owned()).await,
            name_tokens: self.index.name_tokens(name),
            specialty: Specialty::parse("specialty", specialty).unwrap(),
            license_number: seal(
                "license_number",
                format!("LIC-{}", &doctor.0.simple().to_string()[..6]),
            )
            .await,
            license_fingerprint: self.index.license_fingerprint("LIC"),
            issuing_authority: "Medical Council".into(),
            biography: seal("biography", format!("{name} sees patients online.")).await,
            time_zone: DoctorTimeZone::parse("time_zone", zone).unwrap(),
            languages: languages
                .iter()
                .map(|code| Language::parse("languages", code).unwrap())
                .collect(),
        }
    }

    async fn run(&self, doctor: AccountId, command: DoctorCommand) -> u64 {
        self.bus
            .execute(&doctor.to_string(), command, metadata())
            .await
            .unwrap()
            .sequence as u64
    }

    /// Creates a profile with weekday windows, a document, and the given end state.
    async fn doctor(
        &self,
        name: &str,
        specialty: &str,
        zone: &str,
        languages: &[&str],
        end_state: &str,
    ) -> (AccountId, u64) {
        let doctor = AccountId(Uuid::new_v4());
        let details = self.details(doctor, name, specialty, zone, languages).await;
        self.run(doctor, DoctorCommand::UpdateProfile { doctor, details })
            .await;
        let windows: Vec<RawWindow> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
            .iter()
            .map(|day| RawWindow::new(day, "09:00", "17:00"))
            .collect();
        let weekly = WeeklyAvailability::parse("windows", &windows).unwrap();
        self.run(doctor, DoctorCommand::SetWeeklyAvailability { weekly })
            .await;
        let document = LicenseDocument {
            document_id: Uuid::new_v4(),
            object_key: format!("licenses/{doctor}/placeholder"),
            content_type: "application/pdf".into(),
            size: 10,
        };
        let mut sequence = self
            .run(doctor, DoctorCommand::AttachLicenseDocument { document })
            .await;
        if end_state != "draft" {
            sequence = self.run(doctor, DoctorCommand::SubmitForVerification).await;
        }
        let admin = AccountId(Uuid::from_u128(1));
        if end_state == "verified" || end_state == "suspended" {
            sequence = self.run(doctor, DoctorCommand::Approve { by: admin }).await;
        }
        if end_state == "suspended" {
            let reason = self
                .keys
                .seal(doctor.0, "doctor_suspension_reason", b"complaint")
                .await
                .unwrap();
            sequence = self
                .run(doctor, DoctorCommand::Suspend { reason, by: admin })
                .await;
        }
        (doctor, sequence)
    }
}

async fn wait_projected(env: &TestEnv, doctor: AccountId, sequence: u64) {
    let client = env.owner_client().await;
    eventually(Duration::from_secs(30), "the doctors projection", || async {
        let row = client
            .query_opt(
                "SELECT last_sequence FROM projection_offsets WHERE projection = 'doctors' AND aggregate_id = $1",
                &[&doctor.to_string()],
            )
            .await
            .unwrap();
        row.filter(|row| row.get::<_, i64>(0) >= sequence as i64).map(drop)
    })
    .await;
}

async fn patient_token(api: &Api) -> String {
    let email = unique_email("patient");
    api.register_ok("patient", &email, "Pat Ient").await;
    api.login_ok(&email).await.token
}

fn instant(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn directory_lists_only_verified_doctors() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let writer = DoctorWriter::new(&env).await;
    let (verified, verified_sequence) = writer
        .doctor(
            "Dr. Amara Okafor",
            "cardiology",
            "Europe/Berlin",
            &["en", "de"],
            "verified",
        )
        .await;
    let (submitted, submitted_sequence) = writer
        .doctor(
            "Dr. Lukas Brandt",
            "cardiology",
            "Europe/Berlin",
            &["de"],
            "submitted",
        )
        .await;
    let (suspended, suspended_sequence) = writer
        .doctor(
            "Dr. Mei Tanaka",
            "cardiology",
            "Asia/Tokyo",
            &["ja"],
            "suspended",
        )
        .await;
    for (doctor, sequence) in [
        (verified, verified_sequence),
        (submitted, submitted_sequence),
        (suspended, suspended_sequence),
    ] {
        wait_projected(&env, doctor, sequence).await;
    }
    let token = patient_token(&api).await;

    let page: Value = api
        .query_get(&token, "/doctors")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["doctors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doctor_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [verified.to_string()]);
    let entry = &page["doctors"][0];
    assert_eq!(entry["display_name"], "Dr. Amara Okafor");
    assert_eq!(entry["time_zone"], "Europe/Berlin");
    let next = instant(
        entry["next_available_slot"]["start"]
            .as_str()
            .expect("a next slot"),
    );
    assert!(
        next > Utc::now() + chrono::TimeDelta::minutes(59),
        "next slot {next} inside the minimum notice"
    );

    for (query, expected) in [
        ("/doctors?specialty=cardiology", 1),
        ("/doctors?specialty=dermatology", 0),
        ("/doctors?language=de", 1),
        ("/doctors?language=ja", 0),
        ("/doctors?name=okafor", 1),
        ("/doctors?name=AMARA%20okafor", 1),
        ("/doctors?name=brandt", 0),
    ] {
        let page: Value = api.query_get(&token, query).await.json().await.unwrap();
        assert_eq!(
            page["doctors"].as_array().unwrap().len(),
            expected,
            "{query}"
        );
    }
    for (query, field) in [
        ("/doctors?specialty=astrology", "specialty"),
        ("/doctors?language=english", "language"),
        ("/doctors?limit=0", "limit"),
        ("/doctors?cursor=nope", "cursor"),
        ("/doctors?colour=blue", "colour"),
    ] {
        let problem = expect_problem(
            api.query_get(&token, query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let response = api
        .http
        .get(format!("{}/doctors", api.query))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}

/// Starts the query API with its clock at `now`, plus relay and projectors.
async fn query_api_at(env: &TestEnv, now: &str) -> Api {
    let command = env.start_command_api().await;
    let clock: Arc<ManualClock> = ManualClock::starting_at(instant(now));
    let query = env
        .start_query_api_with_clock(env.query_settings(), clock)
        .await;
    env.start_relay();
    env.start_projectors();
    Api::new(&command, &query)
}

async fn first_slot_on(api: &Api, token: &str, doctor: AccountId, day: &str) -> (String, usize) {
    let path = format!("/doctors/{doctor}/slots?from={day}T00:00:00Z&to={day}T23:59:59Z");
    let response = api.query_get(token, &path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let list: Value = response.json().await.unwrap();
    let slots = list["slots"].as_array().unwrap();
    (
        slots
            .first()
            .map(|slot| slot["start"].as_str().unwrap().to_owned())
            .unwrap_or_default(),
        slots.len(),
    )
}

#[tokio::test]
async fn new_york_slots_keep_local_time_across_dst() {
    let env = TestEnv::new().await;
    let api = query_api_at(&env, "2023-03-01T00:00:00Z").await;
    let writer = DoctorWriter::new(&env).await;
    let (doctor, sequence) = writer
        .doctor(
            "Dr. Nora York",
            "cardiology",
            "America/New_York",
            &["en"],
            "verified",
        )
        .await;
    wait_projected(&env, doctor, sequence).await;
    let token = patient_token(&api).await;

    assert_eq!(
        first_slot_on(&api, &token, doctor, "2023-03-10").await,
        ("2023-03-10T14:00:00Z".into(), 16)
    );
    assert_eq!(
        first_slot_on(&api, &token, doctor, "2023-03-13").await,
        ("2023-03-13T13:00:00Z".into(), 16)
    );
    let list: Value = api
        .query_get(
            &token,
            &format!("/doctors/{doctor}/slots?from=2023-03-10T00:00:00Z&to=2023-03-11T00:00:00Z"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["time_zone"], "America/New_York");
}

#[tokio::test]
async fn time_zone_change_moves_future_slots() {
    let env = TestEnv::new().await;
    let api = query_api_at(&env, "2023-10-30T00:00:00Z").await;
    let writer = DoctorWriter::new(&env).await;
    let (doctor, _) = writer
        .doctor(
            "Dr. Nora York",
            "cardiology",
            "America/New_York",
            &["en"],
            "verified",
        )
        .await;
    let token = patient_token(&api).await;

    // After fall back, 09:00 in New York is 14:00Z again.
    let details = writer
        .details(
            doctor,
            "Dr. Nora York",
            "cardiology",
            "America/New_York",
            &["en"],
        )
        .await;
    let sequence = writer
        .run(doctor, DoctorCommand::UpdateProfile { doctor, details })
        .await;
    wait_projected(&env, doctor, sequence).await;
    assert_eq!(
        first_slot_on(&api, &token, doctor, "2023-11-06").await.0,
        "2023-11-06T14:00:00Z"
    );

    let details = writer
        .details(
            doctor,
            "Dr. Nora York",
            "cardiology",
            "Asia/Kolkata",
            &["en"],
        )
        .await;
    let sequence = writer
        .run(doctor, DoctorCommand::UpdateProfile { doctor, details })
        .await;
    wait_projected(&env, doctor, sequence).await;
    // In Kolkata (+05:30) slots align to local half hours: 09:00 local is 03:30Z.
    assert_eq!(
        first_slot_on(&api, &token, doctor, "2023-11-06").await.0,
        "2023-11-06T03:30:00Z"
    );
}

#[tokio::test]
async fn time_off_removes_exactly_its_slots() {
    let env = TestEnv::new().await;
    let api = query_api_at(&env, "2016-11-20T00:00:00Z").await;
    let writer = DoctorWriter::new(&env).await;
    let (doctor, _) = writer
        .doctor(
            "Dr. Berta Lin",
            "neurology",
            "Europe/Berlin",
            &["de"],
            "verified",
        )
        .await;
    let range =
        TimeRange::parse("time_off", "2016-11-29T08:00:00Z", "2016-11-29T09:00:00Z").unwrap();
    let sequence = writer
        .run(
            doctor,
            DoctorCommand::AddTimeOff {
                time_off_id: Uuid::new_v4(),
                range,
            },
        )
        .await;
    wait_projected(&env, doctor, sequence).await;
    let token = patient_token(&api).await;

    let list: Value = api
        .query_get(
            &token,
            &format!("/doctors/{doctor}/slots?from=2016-11-29T00:00:00Z&to=2016-11-30T00:00:00Z"),
        )
        .await
        .json()
        .await
        .unwrap();
    let starts: Vec<&str> = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["start"].as_str().unwrap())
        .collect();
    assert_eq!(starts.len(), 14);
    assert_eq!(starts[0], "2016-11-29T09:00:00Z");
    assert!(!starts.contains(&"2016-11-29T08:00:00Z"));
    assert!(!starts.contains(&"2016-11-29T08:30:00Z"));
}

#[tokio::test]
async fn slot_queries_reject_bad_input() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let writer = DoctorWriter::new(&env).await;
    let (doctor, sequence) = writer
        .doctor(
            "Dr. Ina Put",
            "urology",
            "Europe/Berlin",
            &["de"],
            "verified",
        )
        .await;
    let (draft, draft_sequence) = writer
        .doctor("Dr. Dra Ft", "urology", "Europe/Berlin", &["de"], "draft")
        .await;
    wait_projected(&env, doctor, sequence).await;
    wait_projected(&env, draft, draft_sequence).await;
    let token = patient_token(&api).await;
    let now = Utc::now();
    let from = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let far =
        (now + chrono::TimeDelta::days(61)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let earlier =
        (now - chrono::TimeDelta::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases = [
        (format!("/doctors/{doctor}/slots?to={far}"), "from"),
        (
            format!("/doctors/{doctor}/slots?from=yesterday&to={far}"),
            "from",
        ),
        (
            format!("/doctors/{doctor}/slots?from={from}&to={far}"),
            "to",
        ),
        (
            format!("/doctors/{doctor}/slots?from={from}&to={earlier}"),
            "to",
        ),
        (
            "/doctors/not-a-uuid/slots?from=x&to=y".to_owned(),
            "doctor_id",
        ),
    ];
    for (path, field) in cases {
        let path = path.replace('+', "%2B");
        let problem = expect_problem(
            api.query_get(&token, &path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    let to = (now + chrono::TimeDelta::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let unverified = format!("/doctors/{draft}/slots?from={from}&to={to}");
    expect_problem(
        api.query_get(&token, &unverified).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn admin_reviews_queue_and_downloads_license() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let writer = DoctorWriter::new(&env).await;
    let doctor_email = unique_email("doctor");
    let (doctor_id, _) = api.register_ok("doctor", &doctor_email, "Dr. Queue").await;
    let doctor = AccountId(Uuid::parse_str(&doctor_id).unwrap());
    let details = writer
        .details(
            doctor,
            "Dr. Queue Waiting",
            "psychiatry",
            "Europe/Berlin",
            &["en"],
        )
        .await;
    writer
        .run(doctor, DoctorCommand::UpdateProfile { doctor, details })
        .await;

    // The license goes through the real S3 store.
    let store = ObjectStore::new(&env.object_store_settings()).unwrap();
    let key = ObjectStore::new_object_key(&format!("licenses/{doctor}"));
    let pdf = b"%PDF-1.4 license scan".to_vec();
    let ticket = store
        .presign_upload(&key, "application/pdf", pdf.len() as u64)
        .await
        .unwrap();
    let uploaded = reqwest::Client::new()
        .put(&ticket.url)
        .header("content-type", "application/pdf")
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    let document_id = Uuid::new_v4();
    let document = LicenseDocument {
        document_id,
        object_key: key,
        content_type: "application/pdf".into(),
        size: pdf.len() as u64,
    };
    writer
        .run(doctor, DoctorCommand::AttachLicenseDocument { document })
        .await;
    let sequence = writer
        .run(doctor, DoctorCommand::SubmitForVerification)
        .await;
    wait_projected(&env, doctor, sequence).await;

    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let queue: Value = api
        .query_get(&admin.token, "/admin/doctors/verification-queue")
        .await
        .json()
        .await
        .unwrap();
    let entry = queue["doctors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["doctor_id"] == doctor_id.as_str())
        .expect("queued");
    assert_eq!(entry["status"], "submitted");
    assert_eq!(entry["display_name"], "Dr. Queue Waiting");
    assert!(entry["license_number"]
        .as_str()
        .unwrap()
        .starts_with("LIC-"));
    assert_eq!(
        entry["documents"][0]["document_id"],
        document_id.to_string()
    );

    let path = format!("/admin/doctors/{doctor_id}/license-documents/{document_id}/download-url");
    let link: Value = api
        .query_get(&admin.token, &path)
        .await
        .json()
        .await
        .unwrap();
    let body = reqwest::get(link["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.to_vec(), pdf);
    let audited: i64 = env
        .owner_client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_entries WHERE action = 'GET /admin/doctors/{doctor_id}/license-documents/{document_id}/download-url' AND target_type = 'license_document' AND target_id = $1",
            &[&document_id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);

    let missing = format!(
        "/admin/doctors/{doctor_id}/license-documents/{}/download-url",
        Uuid::new_v4()
    );
    expect_problem(
        api.query_get(&admin.token, &missing).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let doctor_login = api.login_ok(&doctor_email).await;
    expect_problem(
        api.query_get(&doctor_login.token, &path).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_problem(
        api.query_get(&doctor_login.token, "/admin/doctors/verification-queue")
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // The doctor's own profile shows the rejection reason once rejected.
    let reason = writer
        .keys
        .seal(doctor.0, "rejection_reason", b"scan is unreadable")
        .await
        .unwrap();
    let admin_id = AccountId(Uuid::parse_str(&admin.account_id).unwrap());
    let sequence = writer
        .run(
            doctor,
            DoctorCommand::Reject {
                reason,
                by: admin_id,
            },
        )
        .await;
    let own: Value = api
        .query_get(
            &doctor_login.token,
            &format!("/doctors/me/profile?wait_for_sequence={sequence}&wait_ms=15000"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["status"], "rejected");
    assert_eq!(own["decision_reason"], "scan is unreadable");
    assert_eq!(own["weekly_availability"].as_array().unwrap().len(), 0);
}
