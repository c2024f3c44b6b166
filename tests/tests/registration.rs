//! Registration through the command API: bad input, duplicates, concurrency, and the
//! account read model reached through relay, Kafka and projector.

use medflow_tests::api::{expect_problem, unique_email, Api, PASSWORD};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn count(env: &TestEnv, table: &str) -> i64 {
    env.owner_client()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn registration_rejects_bad_input() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let http = reqwest::Client::new();
    let valid = || json!({ "role": "patient", "email": unique_email("bad"), "password": PASSWORD, "name": "Ada Patient" });
    let with = |field: &str, value: Value| {
        let mut body = valid();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let json_cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "missing email",
            without("email"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "missing password",
            without("password"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            "email of wrong type",
            with("email", json!(5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "malformed email",
            with("email", json!("not-an-address")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "over-long email",
            with("email", json!(format!("{}@example.org", "a".repeat(260)))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "empty name",
            with("name", json!("   ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "over-long name",
            with("name", json!("n".repeat(101))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "weak password",
            with("password", json!("password1234")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            "short password",
            with("password", json!("a1!")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            "over-long password",
            with("password", json!("x".repeat(129))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            "self-registered admin",
            with("role", json!("admin")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
        (
            "unknown role",
            with("role", json!("surgeon")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
        (
            "unknown field",
            with("is_admin", json!(true)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is_admin",
        ),
    ];
    for (case, body, status, field) in json_cases {
        let response = http
            .post(format!("{command}/accounts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, status).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|error| error["field"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "{case}: expected field {field} in {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{case}: detail must name {field}: {problem}"
        );
    }

    let raw_cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        (
            "malformed JSON",
            "application/json",
            br#"{"role": "patient", "email": "#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not JSON at all",
            "text/plain",
            b"role=patient".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "oversized body",
            "application/json",
            vec![b' '; 70 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (case, content_type, body, status) in raw_cases {
        let response = http
            .post(format!("{command}/accounts"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, status).await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty()),
            "{case}: {problem}"
        );
    }

    // Nothing of any rejected request was written.
    assert_eq!(count(&env, "events").await, 0);
    assert_eq!(count(&env, "data_keys").await, 0);
}

#[tokio::test]
async fn several_invalid_fields_are_reported_together() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let body = json!({ "role": "patient", "email": "nope", "password": "short", "name": "" });
    let response = reqwest::Client::new()
        .post(format!("{command}/accounts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name", "password"]);
}

#[tokio::test]
async fn registration_reaches_me_through_kafka() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("Grace");
    let (account_id, sequence) = api.register_ok("doctor", &email, "Dr. Grace Hopper").await;
    assert_eq!(sequence, 1);
    let login = api.login_ok(&email.to_uppercase()).await;
    assert_eq!(login.account_id, account_id);

    let response = api.me(&login.token, Some(sequence)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["account_id"], account_id.as_str());
    assert_eq!(me["role"], "doctor");
    assert_eq!(me["status"], "active");
    assert_eq!(me["email"], email.to_lowercase().as_str());
    assert_eq!(me["name"], "Dr. Grace Hopper");
}

#[tokio::test]
async fn duplicate_email_is_conflict() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let api = Api::new(&command, "");
    let email = unique_email("twice");
    api.register_ok("patient", &email, "First").await;
    let response = api
        .register("doctor", &email.to_uppercase(), "Second")
        .await;
    let problem = expect_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:medflow:problem:conflict");
    assert_eq!(count(&env, "events").await, 1);
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_admit_one() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let api = Api::new(&command, "");
    let email = unique_email("race");
    let attempts = (0..4).map(|i| {
        let api = api.clone();
        let email = email.clone();
        async move {
            api.register("patient", &email, &format!("Racer {i}"))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let created = statuses
        .iter()
        .filter(|status| **status == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|status| **status == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 3), "statuses {statuses:?}");
    assert_eq!(count(&env, "events").await, 1);
}

#[tokio::test]
async fn unknown_route_is_problem() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let response = reqwest::Client::new()
        .get(format!("{command}/no/such/route"))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn wait_for_unreached_sequence_times_out() {
    let env = TestEnv::new().await;
    // No relay or projector runs, so the read model never reaches the sequence.
    let command = env.start_command_api().await;
    let query = env.start_query_api().await;
    let api = Api::new(&command, &query);
    let email = unique_email("stale");
    api.register_ok("patient", &email, "Stale Read").await;
    let login = api.login_ok(&email).await;

    let started = std::time::Instant::now();
    let response = api
        .query_get(&login.token, "/me?wait_for_sequence=1&wait_ms=300")
        .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let problem = expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(
        problem["detail"].as_str().unwrap().contains("retry"),
        "{problem}"
    );
    let response = api.me(&login.token, None).await;
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn every_missing_field_is_reported() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{command}/accounts"))
        .json(&json!({ "role": "patient" }))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);

    let body = json!({ "role": 5, "email": true, "password": 123, "name": null });
    let response = http
        .post(format!("{command}/accounts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["role", "email", "password", "name"]);

    let response = http
        .post(format!("{command}/accounts"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "body");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap()
            .contains("RegistrationRequest"),
        "{problem}"
    );
}

#[tokio::test]
async fn sensitive_values_are_never_echoed() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let http = reqwest::Client::new();
    let cases = [
        (
            "/accounts",
            json!({ "role": "patient", "email": "pin@example.org", "password": 987654321987u64, "name": "Pin" }),
        ),
        (
            "/accounts",
            json!({ "role": "patient", "email": 55512345, "password": PASSWORD, "name": "Pin" }),
        ),
        (
            "/sessions",
            json!({ "email": "pin@example.org", "password": 55512345 }),
        ),
        (
            "/sessions",
            json!({ "email": "pin@example.org", "password": ["hunter2-hunter2"] }),
        ),
    ];
    for (path, body) in cases {
        let response = http
            .post(format!("{command}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let text = problem.to_string();
        for secret in ["987654321987", "55512345", "hunter2"] {
            assert!(!text.contains(secret), "{path}: {secret} echoed in {text}");
        }
    }
}
