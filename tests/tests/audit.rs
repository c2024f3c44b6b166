//! The audit trail end to end: access entries for reads and denied attempts, replay
//! filtered by patient through the query API and the CLI, the FHIR AuditEvent export
//! checked by an independent FHIR library, tamper detection by `medflow audit verify`
//! after superuser edits, the compliance role, retention and upcasting on replay.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Days, TimeDelta, Utc};
use medflow_domain::values::{AccountId, Role};
use medflow_tests::api::{expect_problem, unique_email, Api, PASSWORD};
use medflow_tests::database;
use medflow_tests::fixtures::{every_day, Fixtures};
use medflow_tests::process::binary;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

struct Trail {
    env: TestEnv,
    api: Api,
    fixtures: Fixtures,
}

/// Output of one `medflow` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Trail {
    async fn start() -> Self {
        let env = TestEnv::new().await;
        let api = env.start_spine().await;
        let fixtures = Fixtures::new(&env).await;
        Self { env, api, fixtures }
    }

    /// Runs `medflow` with this environment's database and keys. It blocks its thread, so
    /// these tests use a multi-threaded runtime: on a single thread the in-process
    /// projectors would freeze mid-transaction and `audit seal` would wait for them forever.
    fn cli(&self, args: &[&str]) -> Run {
        let mut command = Command::new(binary("medflow"));
        command.args(args);
        for (key, value) in self.env.env_vars() {
            command.env(key, value);
        }
        command.env("MEDFLOW_OWNER_DATABASE_URL", self.env.owner_url());
        let output = command.output().expect("medflow runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn seal(&self) {
        let run = self.cli(&["audit", "seal"]);
        assert_eq!(run.code, 0, "seal failed: {}", run.stderr);
    }

    fn verify(&self) -> Run {
        self.cli(&["audit", "verify"])
    }

    async fn superuser(&self) -> tokio_postgres::Client {
        let client = database::connect(&database::url("postgres", &self.env.database)).await;
        // Replica mode skips the append-only triggers: what an attacker with superuser
        // rights can do.
        client
            .batch_execute("SET session_replication_role = replica")
            .await
            .unwrap();
        client
    }

    /// A compliance officer created by an admin through the command API.
    async fn compliance_token(&self) -> String {
        let admin_email = unique_email("admin");
        self.env.create_admin(&admin_email).await;
        let admin = self.api.login_ok(&admin_email).await;
        let email = unique_email("compliance");
        let response = self
            .api
            .command_post(
                &admin.token,
                "/admin/accounts",
                json!({"email": email, "name": "Casey Audit", "password": PASSWORD, "role": "compliance"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        self.api.login_ok(&email).await.token
    }

    /// Books tomorrow at `hour`:00 UTC with a doctor working every day; returns the
    /// appointment id once it is readable by its patient.
    async fn booked(&self, doctor: AccountId, patient_token: &str, hour: u32) -> String {
        let start = (Utc::now().date_naive() + Days::new(2))
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc();
        let response = self
            .api
            .command_post(
                patient_token,
                "/appointments",
                json!({"doctor_id": doctor.to_string(), "start": start.to_rfc3339()}),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "booking failed: {body}");
        let id = body["appointment_id"].as_str().unwrap().to_owned();
        let path = format!(
            "/appointments/{id}?wait_for_sequence={}&wait_ms=15000",
            body["sequence"]
        );
        let read = self.api.query_get(patient_token, &path).await;
        assert_eq!(read.status(), StatusCode::OK);
        id
    }

    async fn replay(&self, token: &str, query: &str) -> Vec<Value> {
        let response = self
            .api
            .query_get(token, &format!("/audit/records?{query}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/x-ndjson"
        );
        response
            .text()
            .await
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Two patients with one appointment each with the same doctor; patient B has tried
/// to read A's appointment.
struct Scene {
    doctor: AccountId,
    patient_a: AccountId,
    token_a: String,
    patient_b: AccountId,
    token_b: String,
    appointment_a: String,
    appointment_b: String,
}

async fn scene(trail: &Trail) -> Scene {
    let (doctor, _, _) = trail
        .fixtures
        .verified_doctor("UTC", &every_day("08:00", "20:00"))
        .await;
    let (patient_a, token_a) = trail.fixtures.patient().await;
    let (patient_b, token_b) = trail.fixtures.patient().await;
    let appointment_a = trail.booked(doctor, &token_a, 10).await;
    let appointment_b = trail.booked(doctor, &token_b, 11).await;
    let denied = trail
        .api
        .query_get(&token_b, &format!("/appointments/{appointment_a}"))
        .await;
    assert_eq!(denied.status(), StatusCode::NOT_FOUND);
    Scene {
        doctor,
        patient_a,
        token_a,
        patient_b,
        token_b,
        appointment_a,
        appointment_b,
    }
}

async fn access_rows(trail: &Trail) -> Vec<tokio_postgres::Row> {
    trail
        .env
        .owner_client()
        .await
        .query(
            "SELECT actor_id, actor_role, action, target_type, target_id, patient_id, outcome,
                    request_id, client_address, entry_id
             FROM audit_entries WHERE action LIKE 'GET %' ORDER BY entry_id",
            &[],
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_denials_are_recorded() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    let rows = access_rows(&trail).await;

    let denial = rows
        .iter()
        .find(|row| row.get::<_, String>(6) == "denied")
        .expect("the denied read is recorded");
    assert_eq!(denial.get::<_, Option<Uuid>>(0), Some(scene.patient_b.0));
    assert_eq!(
        denial.get::<_, Option<String>>(1).as_deref(),
        Some("patient")
    );
    assert_eq!(
        denial.get::<_, String>(2),
        "GET /appointments/{appointment_id}"
    );
    assert_eq!(
        denial.get::<_, Option<String>>(4).as_deref(),
        Some(scene.appointment_a.as_str())
    );
    assert_eq!(denial.get::<_, Option<Uuid>>(5), Some(scene.patient_a.0));
    assert!(denial.get::<_, Option<String>>(7).is_some(), "request id");
    let sealed: String = denial.get::<_, Option<String>>(8).expect("client address");
    assert!(!sealed.contains("127.0.0.1"), "the address is sealed");

    // A's own read of her appointment succeeded and is recorded too.
    assert!(rows.iter().any(|row| {
        row.get::<_, Option<Uuid>>(0) == Some(scene.patient_a.0)
            && row.get::<_, String>(6) == "success"
            && row.get::<_, Option<Uuid>>(5) == Some(scene.patient_a.0)
    }));
    // The directory and slots carry no patient data and are not recorded. The doctor
    // may reach the directory's read model a moment after the bookings.
    let slots_path = format!(
        "/doctors/{}/slots?from={}&to={}",
        scene.doctor,
        urlencoding(&Utc::now().to_rfc3339()),
        urlencoding(&(Utc::now() + TimeDelta::days(3)).to_rfc3339())
    );
    eventually(Duration::from_secs(30), "the doctor's slots", || async {
        let response = trail.api.query_get(&scene.token_a, &slots_path).await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    let after = access_rows(&trail).await;
    assert_eq!(after.len(), rows.len());
    // An unauthenticated attempt is recorded as denied, without an actor.
    let anonymous = trail
        .api
        .query_get(
            "not-a-token",
            &format!("/appointments/{}", scene.appointment_b),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let last = access_rows(&trail).await.pop().unwrap();
    assert_eq!(last.get::<_, Option<Uuid>>(0), None);
    assert_eq!(last.get::<_, String>(6), "denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_patient_is_complete_and_ordered() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    // B's later read of his own appointment touches only B.
    let own = trail
        .api
        .query_get(
            &scene.token_b,
            &format!("/appointments/{}", scene.appointment_b),
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    // A's cancellation is a later event of the appointment, whose own payload does not
    // name the patient.
    let cancelled = trail
        .api
        .command_post(
            &scene.token_a,
            &format!("/appointments/{}/cancellation", scene.appointment_a),
            json!({"reason": "Cannot make it after all."}),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let compliance = trail.compliance_token().await;

    let records = trail
        .replay(&compliance, &format!("patient_id={}", scene.patient_a))
        .await;
    let expected_events: Vec<(String, i64)> = trail
        .env
        .owner_client()
        .await
        .query(
            "SELECT aggregate_id, sequence FROM events WHERE aggregate_id = $1 ORDER BY global_position",
            &[&scene.appointment_a],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let events: Vec<(String, i64)> = records
        .iter()
        .filter(|record| record["kind"] == "event")
        .map(|record| {
            (
                record["aggregate_id"].as_str().unwrap().to_owned(),
                record["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(events, expected_events);
    assert_eq!(events.len(), 2, "the booking and the cancellation");

    let expected_access: Vec<i64> = access_rows(&trail)
        .await
        .iter()
        .filter(|row| row.get::<_, Option<Uuid>>(5) == Some(scene.patient_a.0))
        // The replay's own entry is written after its snapshot was taken.
        .filter(|row| row.get::<_, String>(2) != "GET /audit/records")
        .map(|row| row.get(9))
        .collect();
    let access: Vec<i64> = records
        .iter()
        .filter(|record| record["kind"] == "access")
        .map(|record| record["position"].as_i64().unwrap())
        .collect();
    assert_eq!(access, expected_access);
    assert!(records
        .iter()
        .any(|record| record["outcome"] == "denied"
            && record["actor_id"] == scene.patient_b.to_string()));
    assert!(records
        .iter()
        .all(|record| record["patient_id"] == scene.patient_a.to_string()));
    // Recording times never go backwards.
    let times: Vec<DateTime<Utc>> = records
        .iter()
        .map(|record| record["recorded_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
    // The compliance officer's replay is itself recorded against patient A.
    let audit_reads = trail
        .replay(
            &compliance,
            &format!("patient_id={}&kind=access", scene.patient_a),
        )
        .await;
    assert!(audit_reads
        .iter()
        .any(|record| record["action"] == "GET /audit/records"));

    // The CLI returns the same selection.
    let run = trail.cli(&[
        "audit",
        "replay",
        "--patient-id",
        &scene.patient_a.to_string(),
        "--kind",
        "events",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cli_events: Vec<(String, i64)> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|record| {
            (
                record["aggregate_id"].as_str().unwrap().to_owned(),
                record["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cli_events, expected_events);
    // The address is opened for compliance staff.
    let denial = records
        .iter()
        .find(|record| record["outcome"] == "denied")
        .unwrap();
    assert_eq!(denial["client_address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_and_csv() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    let compliance = trail.compliance_token().await;

    let by_actor = trail
        .replay(
            &compliance,
            &format!("actor_id={}&kind=access", scene.patient_b),
        )
        .await;
    assert!(!by_actor.is_empty());
    assert!(by_actor
        .iter()
        .all(|record| record["actor_id"] == scene.patient_b.to_string()));

    let by_aggregate = trail
        .replay(
            &compliance,
            &format!(
                "aggregate_type=appointment&aggregate_id={}&kind=events",
                scene.appointment_b
            ),
        )
        .await;
    assert_eq!(by_aggregate.len(), 1);
    assert_eq!(by_aggregate[0]["event_type"], "AppointmentBooked");

    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let none = trail
        .replay(&compliance, &format!("from={}", urlencoding(&future)))
        .await;
    assert!(none.is_empty());

    let response = trail
        .api
        .query_get(
            &compliance,
            &format!("/audit/records?patient_id={}&format=csv", scene.patient_b),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("kind,position,recorded_at,actor_id,actor_role,action"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|row| row.starts_with("event,")));
    assert!(rows.iter().any(|row| row.starts_with("access,")));
}

fn urlencoding(raw: &str) -> String {
    raw.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_export_passes_independent_validation() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    let compliance = trail.compliance_token().await;

    let ndjson = trail
        .api
        .query_get(
            &compliance,
            &format!("/audit/fhir?patient_id={}", scene.patient_a),
        )
        .await;
    assert_eq!(ndjson.status(), StatusCode::OK);
    assert_eq!(
        ndjson.headers()["content-type"].to_str().unwrap(),
        "application/fhir+ndjson"
    );
    let body = ndjson.bytes().await.unwrap();
    let validated = medflow_tests::fhir::validate(&body, "ndjson").unwrap();
    assert!(validated.count >= 3);
    assert!(validated.actions.contains(&"C".to_owned()), "the booking");
    assert!(validated.actions.contains(&"R".to_owned()), "the reads");
    assert!(validated.outcomes.contains(&"4".to_owned()), "the denial");
    for line in std::str::from_utf8(&body).unwrap().lines() {
        let resource: Value = serde_json::from_str(line).unwrap();
        let entities = resource["entity"].as_array().unwrap();
        assert!(entities.iter().any(|entity| {
            entity["what"]["reference"] == format!("Patient/{}", scene.patient_a)
        }));
        assert!(resource["agent"][0]["who"].is_object());
    }

    let bundle = trail
        .api
        .query_get(&compliance, "/audit/fhir?format=bundle")
        .await;
    assert_eq!(bundle.status(), StatusCode::OK);
    let validated =
        medflow_tests::fhir::validate(&bundle.bytes().await.unwrap(), "bundle").unwrap();
    assert!(validated.count > 5);

    // An empty selection is a valid Bundle too.
    let future = urlencoding(&(Utc::now() + TimeDelta::hours(1)).to_rfc3339());
    let empty = trail
        .api
        .query_get(
            &compliance,
            &format!("/audit/fhir?format=bundle&from={future}"),
        )
        .await;
    let validated = medflow_tests::fhir::validate(&empty.bytes().await.unwrap(), "bundle").unwrap();
    assert_eq!(validated.count, 0);

    let run = trail.cli(&[
        "audit",
        "export-fhir",
        "--format",
        "ndjson",
        "--kind",
        "events",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    medflow_tests::fhir::validate(run.stdout.as_bytes(), "ndjson").unwrap();
}

/// Columns of an event row, kept to put it back after a test removed it.
const EVENT_ROW: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_position, transaction_id, recorded_at, hash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_first_tampered_row() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    trail.seal();
    let intact = trail.verify();
    assert_eq!(intact.code, 0, "{}{}", intact.stdout, intact.stderr);
    assert!(
        intact.stdout.contains("events: intact:"),
        "{}",
        intact.stdout
    );

    let superuser = trail.superuser().await;
    let positions: Vec<i64> = superuser
        .query(
            "SELECT global_position FROM events WHERE aggregate_id = $1 ORDER BY sequence",
            &[&scene.appointment_a],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let booking = positions[0];

    // An edited payload.
    superuser
        .execute(
            "UPDATE events SET payload = replace(payload::text, '\"video\"', '\"phone\"')::json WHERE global_position = $1",
            &[&booking],
        )
        .await
        .unwrap();
    let edited = trail.verify();
    assert_eq!(edited.code, 1);
    assert!(
        edited
            .stdout
            .contains(&format!("first mismatch at position {booking}:")),
        "{}",
        edited.stdout
    );
    superuser
        .execute(
            "UPDATE events SET payload = replace(payload::text, '\"phone\"', '\"video\"')::json WHERE global_position = $1",
            &[&booking],
        )
        .await
        .unwrap();
    assert_eq!(
        trail.verify().code,
        0,
        "restoring the row restores the chain"
    );

    // A deleted row: the last event of the doctor's profile, whose successor does not
    // exist, so only the checkpoint records that it was there.
    let last: i64 = superuser
        .query_one(
            "SELECT max(global_position) FROM events WHERE aggregate_id = $1",
            &[&scene.doctor.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    let saved = superuser
        .query_one(
            &format!(
                "SELECT {} FROM events WHERE global_position = $1",
                EVENT_ROW
                    .replace("transaction_id", "transaction_id::text")
                    .replace("payload", "payload::text")
                    .replace("metadata", "metadata::text")
            ),
            &[&last],
        )
        .await
        .unwrap();
    superuser
        .execute("DELETE FROM events WHERE global_position = $1", &[&last])
        .await
        .unwrap();
    let deleted = trail.verify();
    assert_eq!(deleted.code, 1);
    assert!(
        deleted.stdout.contains(&format!(
            "first mismatch at position {last}: the event at position {last} is missing"
        )),
        "{}",
        deleted.stdout
    );
    superuser
        .execute(
            &format!(
                "INSERT INTO events ({EVENT_ROW}) OVERRIDING SYSTEM VALUE
                 VALUES ($1, $2, $3, $4, $5, $6::text::json, $7::text::json, $8, $9::text::xid8, $10, $11)"
            ),
            &[
                &saved.get::<_, String>(0),
                &saved.get::<_, String>(1),
                &saved.get::<_, i64>(2),
                &saved.get::<_, String>(3),
                &saved.get::<_, String>(4),
                &saved.get::<_, String>(5),
                &saved.get::<_, String>(6),
                &saved.get::<_, i64>(7),
                &saved.get::<_, String>(8),
                &saved.get::<_, DateTime<Utc>>(9),
                &saved.get::<_, Vec<u8>>(10),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        trail.verify().code,
        0,
        "the row put back fits the chain again"
    );

    // Two events swapped in place: each now sits at the other's position.
    let (first, second) = (
        positions[0],
        scene_event_after(&superuser, positions[0]).await,
    );
    superuser
        .batch_execute(&format!(
            "UPDATE events SET payload = CASE events.global_position WHEN {first} THEN b.payload ELSE a.payload END,
                               metadata = CASE events.global_position WHEN {first} THEN b.metadata ELSE a.metadata END,
                               event_type = CASE events.global_position WHEN {first} THEN b.event_type ELSE a.event_type END,
                               hash = CASE events.global_position WHEN {first} THEN b.hash ELSE a.hash END
             FROM (SELECT * FROM events WHERE global_position = {first}) a,
                  (SELECT * FROM events WHERE global_position = {second}) b
             WHERE events.global_position IN ({first}, {second})"
        ))
        .await
        .unwrap();
    let reordered = trail.verify();
    assert_eq!(reordered.code, 1);
    assert!(
        reordered
            .stdout
            .contains("events: first mismatch at position"),
        "{}",
        reordered.stdout
    );
    let named: i64 = reordered
        .stdout
        .split("events: first mismatch at position ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|number| number.parse().ok())
        .unwrap();
    assert!(named <= first.min(second), "{}", reordered.stdout);

    // The admin API reports the same.
    let compliance = trail.compliance_token().await;
    let report: Value = trail
        .api
        .query_get(&compliance, "/admin/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["intact"], false);
    assert!(
        report["streams"][0]["problem"]["position"]
            .as_i64()
            .unwrap()
            <= first.min(second)
    );
}

/// The first event after `position`, of any aggregate.
async fn scene_event_after(client: &tokio_postgres::Client, position: i64) -> i64 {
    client
        .query_one(
            "SELECT min(global_position) FROM events WHERE global_position > $1",
            &[&position],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_rewritten_hashes() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    trail.seal();
    let superuser = trail.superuser().await;

    // An access entry edited: the denial turned into a success.
    let denial: i64 = superuser
        .query_one(
            "SELECT entry_id FROM audit_entries WHERE outcome = 'denied' AND actor_id = $1",
            &[&scene.patient_b.0],
        )
        .await
        .unwrap()
        .get(0);
    superuser
        .execute(
            "UPDATE audit_entries SET outcome = 'success' WHERE entry_id = $1",
            &[&denial],
        )
        .await
        .unwrap();
    let run = trail.verify();
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "audit_entries: first mismatch at position {denial}:"
        )),
        "{}",
        run.stdout
    );
    // Rewritten together with its hash, as the database would compute it: only the
    // signed checkpoint still shows the change.
    superuser
        .execute(
            "UPDATE audit_entries SET hash = audit_entry_hash(audit_entries) WHERE entry_id = $1",
            &[&denial],
        )
        .await
        .unwrap();
    let run = trail.verify();
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("no longer match checkpoint"),
        "{}",
        run.stdout
    );

    // A forged checkpoint signature is refused too.
    superuser
        .execute(
            "UPDATE audit_checkpoints SET signature = decode(repeat('00', 64), 'hex') WHERE stream = 'events'",
            &[],
        )
        .await
        .unwrap();
    let run = trail.verify();
    assert!(
        run.stdout
            .contains("has no valid signature by a trusted key"),
        "{}",
        run.stdout
    );

    // Removing every checkpoint leaves rows that should have been sealed long ago.
    superuser
        .execute("DELETE FROM audit_checkpoints", &[])
        .await
        .unwrap();
    let run = trail.cli(&["audit", "verify", "--max-unsealed-age-secs", "0"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(
            "events: first mismatch at position 1: the event at position 1 was recorded at"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("no checkpoint covers it"),
        "{}",
        run.stdout
    );
    // Each CLI verify leaves an entry, like a verify through the admin API.
    let verifications: i64 = superuser
        .query_one(
            "SELECT count(*) FROM audit_entries WHERE action = 'cli audit verify' AND target_id = 'verify'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(verifications >= 2, "{verifications} verify entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealer_signs_new_ranges() {
    let trail = Trail::start().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pool =
        medflow_infra::db::pg_pool(&secrecy::SecretString::from(trail.env.app_url()), 2).unwrap();
    tokio::spawn(medflow_relay::sealer::run(
        trail.env.audit_seal_settings(),
        pool,
        shutdown.clone(),
    ));
    let scene = scene(&trail).await;
    let client = trail.env.owner_client().await;
    let last: i64 = client
        .query_one("SELECT max(global_position) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    eventually(
        Duration::from_secs(30),
        "a checkpoint over every event",
        || {
            let client = &client;
            async move {
                let sealed: Option<i64> = client
                    .query_one(
                        "SELECT max(last_position) FROM audit_checkpoints WHERE stream = 'events'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (sealed >= Some(last)).then_some(())
            }
        },
    )
    .await;
    shutdown.cancel();
    let run = trail.verify();
    assert_eq!(run.code, 0, "{}", run.stdout);

    // A row written after the last checkpoint and then edited is caught by its hash.
    let extra = trail
        .api
        .query_get(
            &scene.token_a,
            &format!("/appointments/{}", scene.appointment_a),
        )
        .await;
    assert_eq!(extra.status(), StatusCode::OK);
    let superuser = trail.superuser().await;
    let newest: i64 = superuser
        .query_one("SELECT max(entry_id) FROM audit_entries", &[])
        .await
        .unwrap()
        .get(0);
    superuser
        .execute(
            "UPDATE audit_entries SET actor_id = $1 WHERE entry_id = $2",
            &[&scene.patient_b.0, &newest],
        )
        .await
        .unwrap();
    let run = trail.verify();
    assert!(
        run.stdout.contains(&format!(
            "audit_entries: first mismatch at position {newest}:"
        )),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_role_granted_by_admin() {
    let trail = Trail::start().await;
    let (_, patient) = trail.fixtures.patient().await;
    for token in [&patient] {
        let response = trail.api.query_get(token, "/audit/records").await;
        expect_problem(response, StatusCode::FORBIDDEN).await;
        let response = trail.api.query_get(token, "/admin/audit/verify").await;
        expect_problem(response, StatusCode::FORBIDDEN).await;
    }
    let self_registered = trail
        .api
        .register("compliance", &unique_email("self"), "Sam Self")
        .await;
    let problem = expect_problem(self_registered, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(problem.to_string().contains("cannot self-register"));

    let compliance = trail.compliance_token().await;
    let me: Value = eventually(Duration::from_secs(30), "the account projected", || async {
        let response = trail.api.me(&compliance, None).await;
        if response.status() == StatusCode::OK {
            response.json().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(me["role"], "compliance");
    let response = trail.api.query_get(&compliance, "/audit/records").await;
    assert_eq!(response.status(), StatusCode::OK);
    // Compliance staff cannot act as admins.
    let response = trail
        .api
        .command_post(
            &compliance,
            "/admin/accounts",
            json!({"email": unique_email("x"), "name": "Xavier", "password": PASSWORD}),
        )
        .await;
    expect_problem(response, StatusCode::FORBIDDEN).await;
    let fixture_admin = trail
        .fixtures
        .session(AccountId(Uuid::new_v4()), Role::Admin)
        .await;
    let wrong_role = trail
        .api
        .command_post(
            &fixture_admin,
            "/admin/accounts",
            json!({"email": unique_email("y"), "name": "Yara", "password": PASSWORD, "role": "patient"}),
        )
        .await;
    let problem = expect_problem(wrong_role, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(problem.to_string().contains("role"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replay_parameters_rejected() {
    let trail = Trail::start().await;
    let compliance = trail.compliance_token().await;
    let cases = [
        ("patient_id=42", "patient_id", "'42'"),
        ("actor_id=nobody", "actor_id", "'nobody'"),
        ("from=yesterday", "from", "'yesterday'"),
        ("kind=everything", "kind", "'everything'"),
        ("format=xml", "format", "'xml'"),
        ("format=ndjson", "format", "'ndjson'"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "to",
            "later than from ('2026-01-02T00:00:00Z')",
        ),
        (
            "aggregate_type=appointment&aggregate_id=not-a-uuid",
            "aggregate_id",
            "'not-a-uuid' is not a valid UUID",
        ),
        ("colour=red", "colour", "unknown field"),
        ("aggregate_id=%00", "aggregate_id", "control character"),
        ("aggregate_type=%00", "aggregate_type", "control character"),
        ("aggregate_type=banana", "aggregate_type", "'banana'"),
    ];
    for (query, field, value) in cases {
        let response = trail
            .api
            .query_get(&compliance, &format!("/audit/records?{query}"))
            .await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let text = problem.to_string();
        assert!(
            text.contains(field) && text.contains(value),
            "{query}: {text}"
        );
    }
    let run = trail.cli(&[
        "audit",
        "replay",
        "--aggregate-type",
        "appointment",
        "--aggregate-id",
        "not-a-uuid",
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("--aggregate-id"), "{}", run.stderr);
    let run = trail.cli(&["audit", "replay", "--patient-id", "42"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("'42' is not a valid UUID"),
        "{}",
        run.stderr
    );

    // Targets of other types have free-text ids.
    let response = trail
        .api
        .query_get(
            &compliance,
            "/audit/records?aggregate_type=audit_trail&aggregate_id=replay",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = trail
        .api
        .query_get(&compliance, "/audit/fhir?format=csv")
        .await;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = trail
        .api
        .query_get(&compliance, "/admin/audit/verify?deep=yes")
        .await;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A rejected query string still records who sent it.
    let rejected: Vec<Option<Uuid>> = trail
        .env
        .owner_client()
        .await
        .query(
            "SELECT actor_id FROM audit_entries WHERE action = 'GET /audit/records' AND outcome = 'failure'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rejected.len(), cases.len());
    assert!(rejected.iter().all(Option::is_some));

    let run = trail.cli(&[
        "audit",
        "replay",
        "--from",
        "2026-01-02",
        "--to",
        "2026-01-01",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("must be later than --from"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_rejects_recent_entries() {
    let trail = Trail::start().await;
    let owner = trail.env.owner_client().await;
    let old = Utc::now() - TimeDelta::days(7 * 366);
    owner
        .execute(
            "INSERT INTO audit_entries (recorded_at, action, outcome) VALUES ($1, 'session.login', 'success'), (now(), 'session.login', 'success')",
            &[&old],
        )
        .await
        .unwrap();

    let young = (Utc::now() - TimeDelta::days(365)).to_rfc3339();
    let refused = trail.cli(&["audit", "purge", "--before", &young]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("kept for six years"),
        "{}",
        refused.stderr
    );
    // The database refuses too, even for the owner, and the application role may not
    // delete at all.
    let direct = owner
        .execute(
            "DELETE FROM audit_entries WHERE recorded_at > now() - interval '1 day'",
            &[],
        )
        .await;
    assert!(direct.is_err());
    let app = trail.env.app_client().await;
    assert!(app.execute("DELETE FROM audit_entries", &[]).await.is_err());

    let cutoff = (Utc::now() - TimeDelta::days(6 * 366)).to_rfc3339();
    let purged = trail.cli(&["audit", "purge", "--before", &cutoff]);
    assert_eq!(purged.code, 0, "{}", purged.stderr);
    assert!(
        purged.stdout.contains("deleted 1 audit entries"),
        "{}",
        purged.stdout
    );
    // Left: the recent login, and an entry for each purge attempt.
    let left: Vec<(String, String, Option<String>)> = owner
        .query(
            "SELECT action, outcome, target_id FROM audit_entries ORDER BY entry_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let purge = |outcome: &str| {
        (
            "cli audit purge".to_owned(),
            outcome.to_owned(),
            Some("purge".to_owned()),
        )
    };
    assert_eq!(
        left,
        vec![
            ("session.login".to_owned(), "success".to_owned(), None),
            purge("denied"),
            purge("success"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_booking_version_is_upcast() {
    let trail = Trail::start().await;
    let appointment = Uuid::new_v4();
    let (patient, token) = trail.fixtures.patient().await;
    let doctor = Uuid::new_v4();
    let start = Utc::now() + TimeDelta::days(3);
    let payload = json!({"AppointmentBooked": {
        "patient": patient.to_string(),
        "doctor": doctor.to_string(),
        "slot": {"start": start, "end": start + TimeDelta::minutes(30)},
        "doctor_time_zone": "Europe/Berlin"
    }});
    trail
        .env
        .app_client()
        .await
        .execute(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('appointment', $1, 1, 'AppointmentBooked', '1', $2, '{\"request_id\": \"legacy\"}')",
            &[&appointment.to_string(), &payload],
        )
        .await
        .unwrap();

    let compliance = trail.compliance_token().await;
    let records = trail
        .replay(&compliance, &format!("aggregate_id={appointment}"))
        .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event_version"], "2");
    assert_eq!(
        records[0]["payload"]["AppointmentBooked"]["consultation"],
        "video"
    );
    assert_eq!(records[0]["patient_id"], patient.to_string());

    // The projector reads the same upcast event.
    let path = format!("/appointments/{appointment}?wait_for_sequence=1&wait_ms=15000");
    let response = trail.api.query_get(&token, &path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let _: HashMap<String, Value> = response.json().await.unwrap();
}

/// A role that can never be a party is refused before the appointment is loaded, so
/// the denied entry names no patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_refused_appointment_by_role() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    let compliance = trail.compliance_token().await;
    let response = trail
        .api
        .query_get(
            &compliance,
            &format!("/appointments/{}", scene.appointment_a),
        )
        .await;
    expect_problem(response, StatusCode::FORBIDDEN).await;
    let last = access_rows(&trail).await.pop().unwrap();
    assert_eq!(last.get::<_, String>(6), "denied");
    assert_eq!(last.get::<_, Option<Uuid>>(5), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_commands_are_recorded() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    let path = format!("/appointments/{}/cancellation", scene.appointment_a);
    let response = trail
        .api
        .command_post(&scene.token_b, &path, json!({"reason": "not mine"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let rows = trail
        .env
        .owner_client()
        .await
        .query(
            "SELECT actor_id, action, target_type, target_id, patient_id, outcome
             FROM audit_entries WHERE action LIKE 'POST %'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the rejected command leaves an entry");
    let row = &rows[0];
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(scene.patient_b.0));
    assert_eq!(
        row.get::<_, String>(1),
        "POST /appointments/{appointment_id}/cancellation"
    );
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("appointment")
    );
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some(scene.appointment_a.as_str())
    );
    assert_eq!(row.get::<_, Option<Uuid>>(4), Some(scene.patient_a.0));
    assert_eq!(row.get::<_, String>(5), "denied");

    let response = trail
        .api
        .register("admin", &unique_email("self.admin"), "Self Admin")
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let rows = trail
        .env
        .owner_client()
        .await
        .query(
            "SELECT actor_id, outcome FROM audit_entries WHERE action = 'POST /accounts'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the rejected registration leaves one entry");
    assert_eq!(rows[0].get::<_, Option<Uuid>>(0), None);
    assert_eq!(rows[0].get::<_, String>(1), "failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_deleted_middle_event() {
    let trail = Trail::start().await;
    let scene = scene(&trail).await;
    trail.seal();
    let superuser = trail.superuser().await;
    // The doctor's profile has five events; the third one goes, and its successor stays.
    let third: i64 = superuser
        .query_one(
            "SELECT global_position FROM events WHERE aggregate_id = $1 AND sequence = 3",
            &[&scene.doctor.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    superuser
        .execute("DELETE FROM events WHERE global_position = $1", &[&third])
        .await
        .unwrap();
    let run = trail.verify();
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "events: first mismatch at position {third}: the event at position {third} is missing"
        )),
        "{}",
        run.stdout
    );
}

/// Replays more events than several cursor batches hold: an exact multiple of the batch
/// size and one more, through the query API and the CLI, so every batch boundary of the
/// read-ahead is crossed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_crosses_batch_boundaries() {
    let trail = Trail::start().await;
    let compliance = trail.compliance_token().await;
    // The synthetic events have no booking, so no projector may see them.
    trail.env.stop_services().await;
    let batch = medflow_infra::audit::replay::BATCH_SIZE;
    let owner = trail.env.owner_client().await;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                      event_version, payload, metadata)
                  SELECT 'appointment', 'bulk-' || g, 1, 'AppointmentCancelled', '1',
                         '{\"AppointmentCancelled\":{\"cancelled_by\":\"patient\"}}', '{}'
                  FROM generate_series($1::bigint, $2::bigint) AS g";
    owner
        .execute(insert, &[&1_i64, &(2 * batch)])
        .await
        .unwrap();

    let query = "aggregate_type=appointment&kind=events";
    let records = trail.replay(&compliance, query).await;
    assert_eq!(records.len() as i64, 2 * batch);
    let positions: Vec<i64> = records
        .iter()
        .map(|record| record["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));

    owner
        .execute(insert, &[&(2 * batch + 1), &(2 * batch + 1)])
        .await
        .unwrap();
    let run = trail.cli(&[
        "audit",
        "replay",
        "--aggregate-type",
        "appointment",
        "--kind",
        "events",
    ]);
    assert_eq!(run.code, 0, "replay failed: {}", run.stderr);
    let ids: Vec<String> = run
        .stdout
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["aggregate_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len() as i64, 2 * batch + 1);
    assert_eq!(ids.first().map(String::as_str), Some("bulk-1"));
    assert_eq!(ids.last().cloned(), Some(format!("bulk-{}", 2 * batch + 1)));
}
