//! Login, logout, expiry, rate limits and the audit trail of sessions.

use std::time::{Duration, Instant};

use medflow_infra::clock::{system_clock, Clock, ManualClock};
use medflow_infra::listener;
use medflow_infra::sessions::{SessionPolicy, SessionStore};
use medflow_tests::api::{expect_problem, unique_email, Api, PASSWORD};
use medflow_tests::fixtures::Fixtures;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

async fn command_only(env: &TestEnv) -> Api {
    let command = env.start_command_api().await;
    let query = env.start_query_api().await;
    Api::new(&command, &query)
}

#[tokio::test]
async fn session_used_after_logout_is_rejected() {
    let env = TestEnv::new().await;
    let api = command_only(&env).await;
    let email = unique_email("logout");
    api.register_ok("patient", &email, "Lou Out").await;
    let login = api.login_ok(&email).await;

    // The query API authenticates against the same session table.
    let before = api.me(&login.token, None).await.status();
    assert_ne!(before, StatusCode::UNAUTHORIZED);

    let logout = api.command_delete(&login.token, "/sessions/current").await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    expect_problem(api.me(&login.token, None).await, StatusCode::UNAUTHORIZED).await;
    expect_problem(
        api.command_delete(&login.token, "/sessions/current").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn logout_everywhere_revokes_every_session() {
    let env = TestEnv::new().await;
    let api = command_only(&env).await;
    let email = unique_email("everywhere");
    api.register_ok("doctor", &email, "Dr. Every Where").await;
    let phone = api.login_ok(&email).await;
    let laptop = api.login_ok(&email).await;
    assert_ne!(
        phone.token, laptop.token,
        "every login must issue a new token"
    );
    assert_ne!(phone.session_id, laptop.session_id);

    let response = api.command_delete(&phone.token, "/sessions").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_problem(api.me(&phone.token, None).await, StatusCode::UNAUTHORIZED).await;
    expect_problem(api.me(&laptop.token, None).await, StatusCode::UNAUTHORIZED).await;

    // Logging in again works and yields a fresh session.
    let again = api.login_ok(&email).await;
    assert_ne!(
        api.me(&again.token, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn malformed_or_unknown_tokens_are_unauthorized() {
    let env = TestEnv::new().await;
    let api = command_only(&env).await;
    for header in [
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer not-a-real-token",
        &format!("Bearer {}", "x".repeat(500)),
    ] {
        let response = api
            .http
            .get(format!("{}/me", api.query))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            problem["type"], "urn:medflow:problem:unauthorized",
            "header {header:?}"
        );
    }
    let response = api
        .http
        .get(format!("{}/me", api.query))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_alike() {
    let env = TestEnv::new().await;
    let api = command_only(&env).await;
    let email = unique_email("known");
    api.register_ok("patient", &email, "Known Person").await;

    let mut timings = Vec::new();
    let mut bodies = Vec::new();
    for (label, login_email, password) in [
        (
            "wrong password",
            email.as_str(),
            "wrong horse battery staple",
        ),
        ("unknown e-mail", "nobody.here@example.org", PASSWORD),
        ("wrong password", email.as_str(), "another wrong passphrase"),
        ("unknown e-mail", "still.nobody@example.org", PASSWORD),
    ] {
        let started = Instant::now();
        let response = api.login(login_email, password).await;
        timings.push((label, started.elapsed()));
        let mut body = expect_problem(response, StatusCode::UNAUTHORIZED).await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "responses differ: {bodies:?}"
    );

    // Both paths run one full scrypt evaluation (tens of milliseconds at N=2^17), so
    // neither reveals itself by a clearly shorter response.
    for (label, elapsed) in &timings {
        assert!(
            *elapsed >= Duration::from_millis(20),
            "{label} took only {elapsed:?}: no password hash was computed"
        );
    }
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let env = TestEnv::new().await;
    let mut settings = env.command_settings();
    settings.login_attempts_per_account = 3;
    let command = env.start_command_api_with(settings).await;
    let api = Api::new(&command, "");
    let email = unique_email("limited");
    api.register_ok("patient", &email, "Rate Limited").await;

    for attempt in 0..3 {
        let response = api.login(&email, "not the password at all").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let response = api.login(&email, PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS).await;

    // Another account from the same address is not affected by this account's limit.
    let other = unique_email("other");
    api.register_ok("patient", &other, "Other Person").await;
    api.login_ok(&other).await;
}

#[tokio::test]
async fn login_is_rate_limited_per_address() {
    let env = TestEnv::new().await;
    let mut settings = env.command_settings();
    settings.login_attempts_per_address = 4;
    let command = env.start_command_api_with(settings).await;
    let api = Api::new(&command, "");
    for attempt in 0..4 {
        let response = api.login(&unique_email("spray"), PASSWORD).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    expect_problem(
        api.login(&unique_email("spray"), PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

/// Starts both APIs on one manual clock, so session expiry can be tested exactly.
async fn apis_on_manual_clock(env: &TestEnv) -> (Api, std::sync::Arc<ManualClock>) {
    let clock = ManualClock::starting_now();
    let command = env
        .start_command_api_with_clock(env.command_settings(), clock.clone())
        .await;
    let query = env
        .start_query_api_with_clock(env.query_settings(), clock.clone())
        .await;
    (Api::new(&command, &query), clock)
}

#[tokio::test]
async fn idle_session_expires() {
    let env = TestEnv::new().await;
    let (api, clock) = apis_on_manual_clock(&env).await;
    let email = unique_email("idle");
    api.register_ok("patient", &email, "Idle Person").await;
    let login = api.login_ok(&email).await;

    // Each use within the 30-minute idle timeout extends the session, well past the
    // point where the first deadline would have ended it.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(29 * 60));
        assert_ne!(
            api.me(&login.token, None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    clock.advance(Duration::from_secs(30 * 60 + 1));
    expect_problem(api.me(&login.token, None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn last_seen_written_once_a_minute() {
    let env = TestEnv::new().await;
    let (api, clock) = apis_on_manual_clock(&env).await;
    let email = unique_email("touch");
    api.register_ok("patient", &email, "Touch Person").await;
    let login = api.login_ok(&email).await;
    let client = env.app_client().await;
    let last_seen = || async {
        client
            .query_one("SELECT last_seen_at FROM sessions", &[])
            .await
            .unwrap()
            .get::<_, chrono::DateTime<chrono::Utc>>(0)
    };
    let at_login = last_seen().await;

    // Within a minute of the last write, requests only read the session.
    clock.advance(Duration::from_secs(30));
    assert_ne!(
        api.me(&login.token, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(last_seen().await, at_login);

    // After a minute, the next request moves the idle deadline.
    clock.advance(Duration::from_secs(31));
    assert_ne!(
        api.me(&login.token, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let now = clock.now();
    assert_eq!(last_seen().await.timestamp_micros(), now.timestamp_micros());

    // The idle timeout runs from that write.
    clock.advance(Duration::from_secs(30 * 60 + 1));
    expect_problem(api.me(&login.token, None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn session_expires_at_absolute_lifetime() {
    let env = TestEnv::new().await;
    let (api, clock) = apis_on_manual_clock(&env).await;
    let email = unique_email("absolute");
    api.register_ok("patient", &email, "Abs Olute").await;
    let login = api.login_ok(&email).await;

    // Active every 20 minutes, the session still ends 12 hours after login.
    for _ in 0..35 {
        clock.advance(Duration::from_secs(20 * 60));
        assert_ne!(
            api.me(&login.token, None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    clock.advance(Duration::from_secs(20 * 60 + 1));
    expect_problem(api.me(&login.token, None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn logins_and_logouts_are_audited_without_personal_data() {
    let env = TestEnv::new().await;
    let api = command_only(&env).await;
    let email = unique_email("audited");
    let (account_id, _) = api.register_ok("patient", &email, "Audrey Audit").await;
    assert_eq!(
        api.login(&email, "definitely the wrong one").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("ghost@example.org", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let login = api.login_ok(&email).await;
    api.command_delete(&login.token, "/sessions/current").await;

    let client = env.owner_client().await;
    let rows = client
        .query(
            "SELECT action, outcome, actor_id::text, request_id, client_address_index, row_to_json(audit_entries)::text
             FROM audit_entries ORDER BY entry_id",
            &[],
        )
        .await
        .unwrap();
    let summary: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "session.login".into(),
                "failure".into(),
                Some(account_id.clone())
            ),
            ("session.login".into(), "failure".into(), None),
            (
                "session.login".into(),
                "success".into(),
                Some(account_id.clone())
            ),
            (
                "session.logout".into(),
                "success".into(),
                Some(account_id.clone())
            ),
        ]
    );
    for row in &rows {
        let request_id: Option<String> = row.get(3);
        assert!(
            request_id.is_some_and(|id| !id.is_empty()),
            "audit entry without request id"
        );
        let whole: String = row.get(5);
        for personal in ["audited", "ghost", "127.0.0.1"] {
            assert!(
                !whole.contains(personal),
                "{personal} in audit entry {whole}"
            );
        }
    }
    let client_index: Option<String> = rows[0].get(4);
    assert!(client_index.is_some(), "client address index missing");
}

/// The command API keeps sessions in memory for commands. A revocation made by another
/// process (here a plain UPDATE, like the CLI's suspension) reaches that memory through
/// the database's announcement, long before the entry would age out.
#[tokio::test]
async fn revocation_elsewhere_reaches_the_session_cache() {
    let env = TestEnv::new().await;
    let fixtures = Fixtures::new(&env).await;
    let (_, token) = fixtures.patient().await;
    let (_, other_token) = fixtures.patient().await;
    let url = SecretString::from(env.app_url());
    let pool = medflow_infra::db::pg_pool(&url, 2).unwrap();
    let store = SessionStore::new(pool, SessionPolicy::default(), system_clock())
        .with_cache(Duration::from_secs(300));
    let shutdown = CancellationToken::new();
    listener::spawn(url, vec![store.cache().unwrap()], shutdown.clone());

    // Nothing is kept until the listener listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.remembered(&token).is_none() || store.remembered(&other_token).is_none() {
        assert!(Instant::now() < deadline, "the sessions were never kept");
        assert!(store.authenticate(&token).await.unwrap().is_some());
        assert!(store.authenticate(&other_token).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let session_id = store.remembered(&token).unwrap().session_id;
    env.app_client()
        .await
        .execute(
            "UPDATE sessions SET revoked_at = now() WHERE session_id = $1",
            &[&session_id],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.remembered(&token).is_some() {
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.authenticate(&token).await.unwrap().is_none());
    assert!(
        store.remembered(&other_token).is_some(),
        "another session is kept"
    );
    shutdown.cancel();
}
