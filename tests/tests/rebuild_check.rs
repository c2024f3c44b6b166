//! The rebuild check (`medflow rebuild-check`): accounts, a doctor profile and
//! appointments go through the real APIs, relay and projectors, then the check compares
//! the live read models with their rebuild from the event table. Covers untouched read
//! models, rows altered or deleted behind the projectors' back, an offset ahead of the
//! event table, projectors that lag behind, and a replay that fails.

use std::process::Output;
use std::time::Duration;

use medflow_projectors::all_projections;
use medflow_projectors::framework::rebuild_check::{
    check_read_models, CheckReport, ProjectionReport, RowDifferences,
};
use medflow_tests::api::{unique_email, Api, Login};
use medflow_tests::process::binary;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Every table the projections of this repository keep, with `projection_offsets`.
const LIVE_TABLES: &[&str] = &[
    "account_directory",
    "doctor_profiles",
    "appointments",
    "projection_offsets",
];

struct Clinic {
    env: TestEnv,
    api: Api,
    /// Cancelling it stops the projectors, so the read models fall behind.
    projectors: CancellationToken,
}

impl Clinic {
    async fn start() -> Self {
        let env = TestEnv::new().await;
        let command = env.start_command_api().await;
        let query = env.start_query_api().await;
        env.start_relay();
        let projectors = env.start_projectors();
        let api = Api::new(&command, &query);
        Self {
            env,
            api,
            projectors,
        }
    }

    async fn register(&self, role: &str, label: &str) -> Login {
        let email = unique_email(label);
        self.api.register_ok(role, &email, "Casey Example").await;
        self.api.login_ok(&email).await
    }

    async fn put(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.api
            .http
            .put(format!("{}{path}", self.api.command))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("command API reachable")
    }
}

/// Reads a JSON response, asserting its status.
async fn expect_json(response: reqwest::Response, status: StatusCode) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(actual, status, "unexpected status; body {body}");
    body
}

/// Ids and logins that [`run_flow`] created.
struct Flow {
    patient: Login,
    /// Booked, then rescheduled, and still booked.
    rescheduled: String,
    /// Booked and left alone.
    booked: String,
    /// Booked and cancelled by its patient, whose account the admin then suspended.
    cancelled: String,
}

/// Onboards a verified doctor with an uploaded license, books three appointments for
/// two patients, reschedules one, cancels one and suspends a patient, all through the
/// HTTP APIs, then waits until every projection has applied every event.
async fn run_flow(clinic: &Clinic) -> Flow {
    let api = &clinic.api;
    let admin_email = unique_email("admin");
    clinic.env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let doctor = clinic.register("doctor", "doctor").await;
    let patient = clinic.register("patient", "patient").await;
    let other_patient = clinic.register("patient", "other").await;

    let profile = json!({
        "display_name": "Dr. Zephyrine Quillfeather",
        "specialty": "cardiology",
        "license_number": "QX-778/41.9",
        "issuing_authority": "Directorate of Health",
        "biography": "Twenty years in cardiology.",
        "time_zone": "UTC",
        "languages": ["en"],
    });
    let response = clinic
        .put(&doctor.token, "/doctors/me/profile", profile)
        .await;
    expect_json(response, StatusCode::OK).await;
    attach_license(clinic, &doctor).await;
    let windows: Vec<Value> = medflow_domain::availability::WEEKDAY_NAMES
        .iter()
        .map(|day| json!({ "weekday": day, "start": "08:00", "end": "20:00" }))
        .collect();
    let response = clinic
        .put(
            &doctor.token,
            "/doctors/me/availability",
            json!({ "windows": windows }),
        )
        .await;
    expect_json(response, StatusCode::OK).await;
    let response = api
        .command_post(&doctor.token, "/doctors/me/submission", json!({}))
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;
    let approval = format!("/admin/doctors/{}/approval", doctor.account_id);
    let response = api.command_post(&admin.token, &approval, json!({})).await;
    expect_json(response, StatusCode::ACCEPTED).await;

    let slots = slot_starts(clinic, &patient, &doctor.account_id).await;
    let rescheduled = book(clinic, &patient, &doctor.account_id, &slots[0]).await;
    let booked = book(clinic, &patient, &doctor.account_id, &slots[1]).await;
    let cancelled = book(clinic, &other_patient, &doctor.account_id, &slots[2]).await;
    let response = api
        .command_post(
            &patient.token,
            &format!("/appointments/{rescheduled}/reschedule"),
            json!({ "start": slots[3] }),
        )
        .await;
    expect_json(response, StatusCode::OK).await;
    let response = api
        .command_post(
            &other_patient.token,
            &format!("/appointments/{cancelled}/cancellation"),
            json!({ "reason": "Feeling better" }),
        )
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;
    let suspension = format!("/admin/accounts/{}/suspension", other_patient.account_id);
    let response = api
        .command_post(
            &admin.token,
            &suspension,
            json!({ "reason": "identity check pending" }),
        )
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;

    wait_for_projections(&clinic.env).await;
    Flow {
        patient,
        rescheduled,
        booked,
        cancelled,
    }
}

/// Uploads a small PDF to the S3 store with a presigned URL and attaches it.
async fn attach_license(clinic: &Clinic, doctor: &Login) {
    let pdf = b"%PDF-1.4\n% license scan\n%%EOF\n".to_vec();
    let response = clinic
        .api
        .command_post(
            &doctor.token,
            "/doctors/me/license-documents/uploads",
            json!({ "content_type": "application/pdf", "size": pdf.len() }),
        )
        .await;
    let ticket = expect_json(response, StatusCode::OK).await;
    let mut upload = clinic.api.http.put(ticket["url"].as_str().unwrap());
    for (name, value) in ticket["headers"].as_object().unwrap() {
        upload = upload.header(name.as_str(), value.as_str().unwrap());
    }
    let stored = upload.body(pdf).send().await.expect("S3 store reachable");
    assert!(stored.status().is_success(), "upload failed: {stored:?}");
    let response = clinic
        .api
        .command_post(
            &doctor.token,
            "/doctors/me/license-documents",
            json!({ "object_key": ticket["object_key"] }),
        )
        .await;
    expect_json(response, StatusCode::CREATED).await;
}

/// Returns the first slot starts (RFC 3339) of the doctor two days from now, once the
/// directory lists the doctor.
async fn slot_starts(clinic: &Clinic, patient: &Login, doctor_id: &str) -> Vec<String> {
    let now = chrono::Utc::now();
    let format =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!(
        "/doctors/{doctor_id}/slots?from={}&to={}",
        format(now + chrono::TimeDelta::days(2)),
        format(now + chrono::TimeDelta::days(3))
    );
    let body: Value = eventually(
        Duration::from_secs(30),
        "the verified doctor's slots",
        || async {
            let response = clinic.api.query_get(&patient.token, &path).await;
            if response.status() != StatusCode::OK {
                return None;
            }
            Some(response.json::<Value>().await.unwrap())
        },
    )
    .await;
    let starts: Vec<String> = body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["start"].as_str().unwrap().to_owned())
        .collect();
    assert!(starts.len() >= 4, "too few slots: {body}");
    starts
}

/// Books `start` for `patient` and returns the appointment id.
async fn book(clinic: &Clinic, patient: &Login, doctor_id: &str, start: &str) -> String {
    let response = clinic
        .api
        .command_post(
            &patient.token,
            "/appointments",
            json!({ "doctor_id": doctor_id, "start": start }),
        )
        .await;
    let body = expect_json(response, StatusCode::CREATED).await;
    body["appointment_id"].as_str().unwrap().to_owned()
}

/// Waits until, for every aggregate in the event table, its projection's offset has
/// reached the aggregate's last sequence.
async fn wait_for_projections(env: &TestEnv) {
    let client = env.owner_client().await;
    eventually(
        Duration::from_secs(60),
        "every projection to apply every event",
        || async {
            let behind: i64 = client
                .query_one(
                    "SELECT count(*)
                     FROM (SELECT aggregate_type, aggregate_id, max(sequence) AS last_sequence
                           FROM events GROUP BY aggregate_type, aggregate_id) AS stream
                     WHERE NOT EXISTS (
                       SELECT 1 FROM projection_offsets AS applied
                       WHERE applied.aggregate_type = stream.aggregate_type
                         AND applied.aggregate_id = stream.aggregate_id
                         AND applied.last_sequence = stream.last_sequence)",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (behind == 0).then_some(())
        },
    )
    .await;
}

/// Runs the check as the application role on two new connections.
async fn check(env: &TestEnv) -> CheckReport {
    let mut snapshot = env.app_client().await;
    let mut scratch = env.app_client().await;
    check_read_models(&mut snapshot, &mut scratch, &all_projections())
        .await
        .expect("the rebuild check runs")
}

/// Runs `medflow rebuild-check` with `arguments` against the test database.
async fn run_cli(env: &TestEnv, arguments: &[&str]) -> Output {
    tokio::process::Command::new(binary("medflow"))
        .arg("rebuild-check")
        .args(arguments)
        .env("MEDFLOW_DATABASE_URL", env.app_url())
        .output()
        .await
        .expect("medflow runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn projection<'a>(report: &'a CheckReport, name: &str) -> &'a ProjectionReport {
    report
        .projections
        .iter()
        .find(|projection| projection.projection == name)
        .unwrap_or_else(|| panic!("no report for projection {name}: {report:#?}"))
}

fn no_rows() -> RowDifferences {
    RowDifferences::default()
}

/// Keys of single-column rows, sorted as PostgreSQL sorts lower-case UUIDs.
fn keys(ids: &[&str]) -> Vec<Vec<String>> {
    let mut keys: Vec<Vec<String>> = ids.iter().map(|id| vec![(*id).to_owned()]).collect();
    keys.sort();
    keys
}

/// Reads every live read-model row as JSON text, table by table.
async fn live_rows(env: &TestEnv) -> Vec<Vec<String>> {
    let client = env.owner_client().await;
    let mut tables = Vec::new();
    for table in LIVE_TABLES {
        let rows = client
            .query(
                &format!("SELECT row_to_json(t)::text AS line FROM {table} AS t ORDER BY line"),
                &[],
            )
            .await
            .unwrap();
        tables.push(rows.iter().map(|row| row.get(0)).collect());
    }
    tables
}

async fn count_events(env: &TestEnv, aggregate_type: &str) -> u64 {
    let client = env.owner_client().await;
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE aggregate_type = $1",
            &[&aggregate_type],
        )
        .await
        .unwrap()
        .get(0);
    count as u64
}

#[tokio::test]
async fn rebuild_equals_live_read_models() {
    let clinic = Clinic::start().await;
    run_flow(&clinic).await;
    let before = live_rows(&clinic.env).await;

    let mut snapshot = clinic.env.app_client().await;
    let mut scratch = clinic.env.app_client().await;
    let report = check_read_models(&mut snapshot, &mut scratch, &all_projections())
        .await
        .expect("the rebuild check runs");

    assert!(!report.has_differences(), "{report:#?}");
    let names: Vec<&str> = report
        .projections
        .iter()
        .map(|projection| projection.projection.as_str())
        .collect();
    assert_eq!(names, ["accounts", "doctors", "appointments"]);
    // (projection, aggregate type, table, rows). The rows are an admin, a doctor and two
    // patients, one doctor profile, and three appointments.
    let expected = [
        ("accounts", "account", "account_directory", 4),
        ("doctors", "doctor", "doctor_profiles", 1),
        ("appointments", "appointment", "appointments", 3),
    ];
    for (name, aggregate_type, table, rows) in expected {
        let checked = projection(&report, name);
        assert_eq!(checked.aggregates, rows, "{name}");
        assert_eq!(checked.aggregates_catching_up, 0, "{name}");
        assert_eq!(checked.events_not_yet_applied, 0, "{name}");
        assert_eq!(
            checked.events_replayed,
            count_events(&clinic.env, aggregate_type).await,
            "{name}"
        );
        let read_model = checked.table(table).expect("read-model table reported");
        assert_eq!(read_model.live_rows, rows, "{table}");
        assert_eq!(read_model.rebuilt_rows, rows, "{table}");
        assert_eq!(read_model.only_in_live, no_rows(), "{table}");
        assert_eq!(read_model.only_in_rebuilt, no_rows(), "{table}");
        assert!(read_model.ignored_columns.is_empty(), "{table}");
        let offsets = checked
            .table("projection_offsets")
            .expect("offsets reported");
        assert_eq!(offsets.live_rows, rows, "{name} offsets");
        assert_eq!(offsets.rebuilt_rows, rows, "{name} offsets");
        assert_eq!(offsets.ignored_columns, ["updated_at"], "{name} offsets");
    }

    // The check leaves the live rows, the scratch connection and its session as they were.
    assert_eq!(live_rows(&clinic.env).await, before);
    let temporary: i64 = scratch
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temporary, 0, "temporary tables left behind");
    let search_path: String = scratch
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(search_path, "\"$user\", public");

    let output = run_cli(&clinic.env, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout(&output).contains(
            "Result: all 3 checked projections equal their rebuild from the event table."
        ),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn altered_and_deleted_rows_are_reported() {
    let clinic = Clinic::start().await;
    let flow = run_flow(&clinic).await;
    let owner = clinic.env.owner_client().await;
    let changed = owner
        .execute(
            "UPDATE appointments SET status = 'completed' WHERE appointment_id = $1::text::uuid",
            &[&flow.rescheduled],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let deleted = owner
        .execute(
            "DELETE FROM appointments WHERE appointment_id = $1::text::uuid",
            &[&flow.booked],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    let report = check(&clinic.env).await;

    assert!(report.has_differences());
    for name in ["accounts", "doctors"] {
        assert!(!projection(&report, name).has_differences(), "{report:#?}");
    }
    let appointments = projection(&report, "appointments");
    let table = appointments.table("appointments").unwrap();
    assert_eq!(table.key_columns, ["appointment_id"]);
    assert_eq!(table.live_rows, 2);
    assert_eq!(table.rebuilt_rows, 3);
    assert_eq!(table.only_in_live.rows, 1);
    assert_eq!(table.only_in_live.keys, keys(&[&flow.rescheduled]));
    assert_eq!(table.only_in_rebuilt.rows, 2);
    assert_eq!(
        table.only_in_rebuilt.keys,
        keys(&[&flow.rescheduled, &flow.booked])
    );
    let offsets = appointments.table("projection_offsets").unwrap();
    assert!(!offsets.has_differences(), "{offsets:#?}");
    assert_eq!(appointments.aggregates_catching_up, 0);

    let output = run_cli(&clinic.env, &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text.contains(
            "  appointments: 2 rows live, 3 rows rebuilt: 1 row only in live, 2 rows only in rebuilt\n"
        ),
        "{text}"
    );
    assert!(text.contains(&flow.rescheduled), "{text}");
    assert!(text.contains(&flow.booked), "{text}");
    assert!(!text.contains(&flow.cancelled), "{text}");
    assert!(
        text.contains(
            "Result: 1 of 3 checked projections differ from their rebuild: appointments."
        ),
        "{text}"
    );

    // The filter checks only the named projections.
    let output = run_cli(
        &clinic.env,
        &["--projection", "accounts", "--projection", "doctors"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(!stdout(&output).contains("Projection appointments"));
    let output = run_cli(&clinic.env, &["--projection", "appointment"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(
            "unknown projection 'appointment'; known projections: accounts, doctors, appointments"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn offset_ahead_of_events_is_reported() {
    let clinic = Clinic::start().await;
    let flow = run_flow(&clinic).await;
    let owner = clinic.env.owner_client().await;
    let changed = owner
        .execute(
            "UPDATE projection_offsets SET last_sequence = last_sequence + 3
             WHERE projection = 'accounts' AND aggregate_id = $1",
            &[&flow.patient.account_id],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);

    let report = check(&clinic.env).await;

    let accounts = projection(&report, "accounts");
    assert!(!accounts
        .table("account_directory")
        .unwrap()
        .has_differences());
    let offsets = accounts.table("projection_offsets").unwrap();
    assert_eq!(
        offsets.key_columns,
        ["projection", "aggregate_type", "aggregate_id"]
    );
    let key = vec![vec![
        "accounts".to_owned(),
        "account".to_owned(),
        flow.patient.account_id.clone(),
    ]];
    assert_eq!(offsets.only_in_live.keys, key);
    assert_eq!(offsets.only_in_rebuilt.keys, key);
    assert_eq!(accounts.aggregates_catching_up, 0);
    for name in ["doctors", "appointments"] {
        assert!(!projection(&report, name).has_differences(), "{report:#?}");
    }
}

#[tokio::test]
async fn lagging_projection_is_catching_up() {
    let clinic = Clinic::start().await;
    let flow = run_flow(&clinic).await;
    clinic.projectors.cancel();
    // The projectors are idle, so they stop at once. The pause lets them leave the group.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Two new events that no projector applies: a cancellation and a registration.
    let response = clinic
        .api
        .command_post(
            &flow.patient.token,
            &format!("/appointments/{}/cancellation", flow.booked),
            json!({ "reason": "Travelling" }),
        )
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;
    clinic.register("patient", "late").await;

    let report = check(&clinic.env).await;

    assert!(!report.has_differences(), "{report:#?}");
    // (projection, aggregates, catching up, events not yet applied)
    let expected = [
        ("accounts", 5, 1, 1),
        ("doctors", 1, 0, 0),
        ("appointments", 3, 1, 1),
    ];
    for (name, aggregates, catching_up, not_applied) in expected {
        let checked = projection(&report, name);
        assert_eq!(checked.aggregates, aggregates, "{name}");
        assert_eq!(checked.aggregates_catching_up, catching_up, "{name}");
        assert_eq!(checked.events_not_yet_applied, not_applied, "{name}");
    }
    let accounts = projection(&report, "accounts");
    let directory = accounts.table("account_directory").unwrap();
    assert_eq!(directory.live_rows, 4);
    assert_eq!(directory.rebuilt_rows, 4);
    let output = run_cli(&clinic.env, &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        text.contains(
            "1 aggregate still catching up (1 event not yet applied by the live projector)"
        ),
        "{text}"
    );

    // A lagging aggregate is still compared, at the sequence its projector reached.
    let owner = clinic.env.owner_client().await;
    let changed = owner
        .execute(
            "UPDATE appointments SET reschedule_count = 7 WHERE appointment_id = $1::text::uuid",
            &[&flow.booked],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let report = check(&clinic.env).await;
    let appointments = projection(&report, "appointments");
    assert_eq!(appointments.aggregates_catching_up, 1);
    let table = appointments.table("appointments").unwrap();
    assert_eq!(table.only_in_live.keys, keys(&[&flow.booked]));
    assert_eq!(table.only_in_rebuilt.keys, keys(&[&flow.booked]));
}

#[tokio::test]
async fn failed_check_drops_scratch_tables() {
    // No services run: an event that cannot be decoded, with an offsets row claiming
    // that the live projector applied it, makes the replay fail.
    let env = TestEnv::new().await;
    let owner = env.owner_client().await;
    let account_id = uuid::Uuid::new_v4().to_string();
    owner
        .execute(
            "INSERT INTO events
               (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('account', $1, 1, 'AccountRegistered', '1', '{\"Unknown\": {}}', '{}')",
            &[&account_id],
        )
        .await
        .unwrap();
    owner
        .execute(
            "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence)
             VALUES ('accounts', 'account', $1, 1)",
            &[&account_id],
        )
        .await
        .unwrap();

    let mut snapshot = env.app_client().await;
    let mut scratch = env.app_client().await;
    let error = check_read_models(&mut snapshot, &mut scratch, &all_projections())
        .await
        .expect_err("the replay fails");

    let message = format!("{error:#}");
    assert!(
        message.contains("rebuild check of projection accounts failed"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "replaying AccountRegistered sequence 1 of account {account_id}"
        )),
        "{message}"
    );
    let temporary: i64 = scratch
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temporary, 0, "temporary tables left behind");
    let search_path: String = scratch
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(search_path, "\"$user\", public");

    let output = run_cli(&env, &[]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("error: rebuild check of projection accounts failed"),
        "{error}"
    );
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}
