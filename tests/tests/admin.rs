//! Admin bootstrap, admin creation, suspension and the admin account list.

use medflow_tests::api::{expect_problem, unique_email, PASSWORD};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn admin_manages_accounts_end_to_end() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;

    // Only admins create admins; the new admin records who created it.
    let second_email = unique_email("admin2");
    let body = json!({ "email": second_email, "password": PASSWORD, "name": "Second Admin" });
    let response = api
        .command_post(&admin.token, "/admin/accounts", body.clone())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let patient_email = unique_email("patient");
    let (patient_id, _) = api.register_ok("patient", &patient_email, "Pat Ient").await;
    let patient = api.login_ok(&patient_email).await;
    let mut other = body.clone();
    other["email"] = json!(unique_email("sneaky"));
    expect_problem(
        api.command_post(&patient.token, "/admin/accounts", other)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Suspension revokes the patient's sessions at once and blocks new logins.
    let path = format!("/admin/accounts/{patient_id}/suspension");
    let response = api
        .command_post(
            &admin.token,
            &path,
            json!({ "reason": "identity check pending" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["sequence"], 2);
    expect_problem(api.me(&patient.token, None).await, StatusCode::UNAUTHORIZED).await;
    let problem = expect_problem(
        api.login(&patient_email, PASSWORD).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("suspended"));

    // The admin list reflects it once the projection reached sequence 2.
    let list = api
        .query_get(&admin.token, &format!("/admin/accounts?role=patient&wait_for_account={patient_id}&wait_for_sequence=2&wait_ms=15000"))
        .await;
    assert_eq!(list.status(), StatusCode::OK);
    let page: Value = list.json().await.unwrap();
    assert_eq!(page["accounts"][0]["status"], "suspended");
    assert_eq!(
        page["accounts"][0]["suspension_reason"],
        "identity check pending"
    );
    assert_eq!(page["accounts"][0]["email"], patient_email.as_str());

    // Suspending twice conflicts; an admin cannot suspend themselves.
    let again = api
        .command_post(&admin.token, &path, json!({ "reason": "again" }))
        .await;
    expect_problem(again, StatusCode::CONFLICT).await;
    let own = format!("/admin/accounts/{}/suspension", admin.account_id);
    expect_problem(
        api.command_post(&admin.token, &own, json!({ "reason": "oops" }))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Reinstatement lets the patient log in again.
    let response = api.command_delete(&admin.token, &path).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    api.login_ok(&patient_email).await;
    expect_problem(
        api.command_delete(&admin.token, &path).await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn admin_commands_reject_bad_input() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let cases = [
        (
            "/admin/accounts/not-a-uuid/suspension",
            json!({ "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "account_id",
        ),
        (
            "/admin/accounts/00000000-0000-0000-0000-000000000000/suspension",
            json!({ "reason": "x" }),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "/admin/accounts/00000000-0000-0000-0000-000000000000/suspension",
            json!({ "reason": "r".repeat(501) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
        ),
        (
            "/admin/accounts",
            json!({ "email": "bad", "password": PASSWORD, "name": "N" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
    ];
    for (path, body, status, field) in cases {
        let problem =
            expect_problem(api.command_post(&admin.token, path, body).await, status).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{path}: {problem}"
        );
    }
    let bad_queries = [
        ("/admin/accounts?limit=0", "limit"),
        ("/admin/accounts?limit=abc", "limit"),
        ("/admin/accounts?role=surgeon", "role"),
        ("/admin/accounts?status=gone", "status"),
        ("/admin/accounts?cursor=%25%25", "cursor"),
        ("/admin/accounts?email=nope", "email"),
        (
            "/admin/accounts?wait_for_account=x&wait_for_sequence=1",
            "wait_for_account",
        ),
        ("/me?wait_for_sequence=-3", "wait_for_sequence"),
        ("/me?wait_for_sequence=1&wait_ms=99999999", "wait_ms"),
        ("/me?wait_ms=500", "wait_ms"),
        (
            "/me?wait_for_sequence=99999999999999999999999",
            "wait_for_sequence",
        ),
        ("/admin/accounts?wait_for_sequence=abc", "wait_for_sequence"),
        ("/admin/accounts?wait_for_sequence=2", "wait_for_account"),
        ("/admin/accounts?wait_ms=-5", "wait_ms"),
        ("/admin/accounts?limit=5&limit=6", "duplicate field"),
    ];
    for (path, field) in bad_queries {
        let problem = expect_problem(
            api.query_get(&admin.token, path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{path}: {problem}"
        );
    }
}

#[tokio::test]
async fn admin_list_pages_through_every_account() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let admin_email = unique_email("admin");
    let admin_id = env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let mut expected = vec![admin_id];
    for index in 0..4 {
        let email = unique_email(&format!("page{index}"));
        let (account_id, _) = api
            .register_ok(
                if index % 2 == 0 { "patient" } else { "doctor" },
                &email,
                "Paged Person",
            )
            .await;
        expected.push(account_id);
    }

    // Read-your-writes applies per aggregate: accounts sit in different partitions, so the
    // last one being projected says nothing about the others. Wait for each.
    for account in &expected {
        let wait = format!(
            "/admin/accounts?limit=1&wait_for_account={account}&wait_for_sequence=1&wait_ms=15000"
        );
        assert_eq!(
            api.query_get(&admin.token, &wait).await.status(),
            StatusCode::OK
        );
    }
    let mut seen = Vec::new();
    let mut path = "/admin/accounts?limit=2".to_owned();
    loop {
        let page: Value = api
            .query_get(&admin.token, &path)
            .await
            .json()
            .await
            .unwrap();
        let accounts = page["accounts"].as_array().unwrap();
        assert!(accounts.len() <= 2);
        seen.extend(
            accounts
                .iter()
                .map(|account| account["account_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/accounts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(
        sorted_seen.len(),
        seen.len(),
        "an account appeared twice: {seen:?}"
    );
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(sorted_seen, sorted_expected);

    let doctors: Value = api
        .query_get(&admin.token, "/admin/accounts?role=doctor")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doctors["accounts"].as_array().unwrap().len(), 2);
    let by_email: Value = api
        .query_get(
            &admin.token,
            &format!("/admin/accounts?email={}", admin_email.to_uppercase()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_email["accounts"][0]["email"], admin_email.as_str());

    let patient_email = unique_email("nosy");
    api.register_ok("patient", &patient_email, "Nosy Patient")
        .await;
    let patient = api.login_ok(&patient_email).await;
    expect_problem(
        api.query_get(&patient.token, "/admin/accounts").await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn concurrent_suspensions_admit_one() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let (patient_id, _) = api
        .register_ok("patient", &unique_email("target"), "Tar Get")
        .await;
    let path = format!("/admin/accounts/{patient_id}/suspension");
    let attempts = (0..6).map(|index| {
        let (api, token, path) = (api.clone(), admin.token.clone(), path.clone());
        async move {
            api.command_post(
                &token,
                &path,
                json!({ "reason": format!("attempt {index}") }),
            )
            .await
            .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let accepted = statuses
        .iter()
        .filter(|status| **status == StatusCode::ACCEPTED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|status| **status == StatusCode::CONFLICT)
        .count();
    assert_eq!((accepted, conflicts), (1, 5), "statuses {statuses:?}");
    let count: i64 = env
        .owner_client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'AccountSuspended'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}
