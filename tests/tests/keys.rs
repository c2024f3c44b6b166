//! Key management: master key rotation and crypto-shredding, through the real APIs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_tests::api::{expect_problem, unique_email, PASSWORD};
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

fn ring(env: &TestEnv, master_keys: &str) -> KeyRing {
    let pool = medflow_infra::db::pg_pool(&SecretString::from(env.app_url()), 2).unwrap();
    KeyRing::new(
        pool,
        MasterKeys::parse(&SecretString::from(master_keys.to_owned())).unwrap(),
    )
}

#[tokio::test]
async fn master_key_rotation_keeps_sealed_data_readable() {
    let mut env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("rotate");
    let (_, sequence) = api.register_ok("patient", &email, "Rota Tion").await;

    // Rotate: a new first key, the old one kept for unwrapping, then re-wrap.
    let old = env.master_keys.clone();
    let new_key = format!("test2:{}", STANDARD.encode([42u8; 32]));
    let rewrapped = ring(&env, &format!("{new_key},{old}"))
        .rewrap_all()
        .await
        .unwrap();
    assert_eq!(rewrapped, 1);
    let client = env.owner_client().await;
    let master: String = client
        .query_one("SELECT master_key_id FROM data_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(master, "test2");

    // Services that know only the new master key still open the old events' data.
    env.master_keys = new_key;
    let command = env.start_command_api().await;
    let query = env.start_query_api().await;
    let rotated = medflow_tests::api::Api::new(&command, &query);
    let login = rotated.login_ok(&email).await;
    let me: Value = rotated
        .me(&login.token, Some(sequence))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["name"], "Rota Tion");
}

#[tokio::test]
async fn destroyed_data_key_erases_personal_data() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("erase");
    let (account_id, sequence) = api.register_ok("patient", &email, "Era Sure").await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let login = api.login_ok(&email).await;
    assert_eq!(
        api.me(&login.token, Some(sequence)).await.status(),
        StatusCode::OK
    );

    // The operator needs no LiveKit credentials for key commands.
    let mut variables = env.env_vars();
    variables.retain(|(key, _)| !key.starts_with("MEDFLOW_LIVEKIT_"));
    let output = medflow_tests::process::ServiceProcess::run_to_end(
        "medflow",
        &["keys", "destroy", "--subject", &account_id],
        &variables,
    );
    assert!(output.contains("destroyed 1 data keys"), "{output}");

    // The services' key caches still hold the key for a while; fresh ones do not.
    let query = env.start_query_api().await;
    let command = env.start_command_api().await;
    let fresh = medflow_tests::api::Api::new(&command, &query);
    let page: Value = fresh
        .query_get(&admin.token, "/admin/accounts?role=patient")
        .await
        .json()
        .await
        .unwrap();
    let erased = &page["accounts"][0];
    assert_eq!(erased["account_id"], account_id.as_str());
    assert!(erased["email"].is_null(), "{erased}");
    assert!(erased["name"].is_null(), "{erased}");
    expect_problem(
        fresh.login(&email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Its sessions were revoked too.
    expect_problem(fresh.me(&login.token, None).await, StatusCode::UNAUTHORIZED).await;
}

/// Runs `medflow keys check` with `master_keys` in place of the environment's; returns
/// whether it succeeded and its standard output.
fn keys_check(env: &TestEnv, master_keys: &str) -> (bool, String) {
    let mut command = std::process::Command::new(medflow_tests::process::binary("medflow"));
    command.args(["keys", "check"]);
    for (key, value) in env.env_vars() {
        command.env(key, value);
    }
    command.env("MEDFLOW_MASTER_KEYS", master_keys);
    let output = command.output().expect("medflow runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn keys_check_detects_foreign_master_keys() {
    let env = TestEnv::new().await;
    let (ok, report) = keys_check(&env, &env.master_keys);
    assert!(ok, "{report}");
    assert!(report.contains("no data keys stored yet"), "{report}");

    let api = env.start_spine().await;
    for name in ["Key One", "Key Two"] {
        api.register_ok("patient", &unique_email("keys-check"), name)
            .await;
    }
    let (ok, report) = keys_check(&env, &env.master_keys);
    assert!(ok, "{report}");
    assert!(
        report.contains("master key 'test1': ok, 2 of 2 data keys unwrapped"),
        "{report}"
    );

    // Another deployment's key under the same id: every unwrap fails.
    let foreign = format!("test1:{}", STANDARD.encode([7u8; 32]));
    let (ok, report) = keys_check(&env, &foreign);
    assert!(!ok, "{report}");
    assert!(
        report.contains("master key 'test1': 2 of 2 sampled data keys failed to unwrap"),
        "{report}"
    );

    // A key list without the id the data keys name.
    let other_id = format!("test9:{}", STANDARD.encode([7u8; 32]));
    let (ok, report) = keys_check(&env, &other_id);
    assert!(!ok, "{report}");
    assert!(
        report.contains("master key 'test1': NOT in MEDFLOW_MASTER_KEYS"),
        "{report}"
    );
}
