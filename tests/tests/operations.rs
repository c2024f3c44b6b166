//! Operational endpoints of every service: health, readiness, metrics and API docs.

use std::net::TcpListener;
use std::time::Duration;

use medflow_tests::process::ServiceProcess;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn apis_serve_health_metrics_and_openapi() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let query = env.start_query_api().await;
    let http = reqwest::Client::new();
    for (base, expected_paths) in [
        (
            &command,
            vec![
                "/accounts",
                "/sessions",
                "/sessions/current",
                "/admin/accounts/{account_id}/suspension",
            ],
        ),
        (&query, vec!["/me", "/admin/accounts"]),
    ] {
        let live = http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        let ready: Value = http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["checks"]["postgres"], "ok");
        assert_eq!(ready["checks"]["object_store"], "ok");

        let document: Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            document["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            document["openapi"]
        );
        for path in expected_paths {
            assert!(
                document["paths"].get(path).is_some(),
                "{base}: {path} missing from the OpenAPI document"
            );
        }
        assert!(document["components"]["schemas"].get("Problem").is_some());
        let docs = http.get(format!("{base}/docs")).send().await.unwrap();
        assert_eq!(docs.status(), StatusCode::OK);
        assert!(docs.text().await.unwrap().contains("<html"));

        // Unknown paths share one label, so clients cannot create unbounded series.
        let unknown = http
            .get(format!("{base}/no-such-path-4711"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("_http_requests_duration_seconds"),
            "{metrics}"
        );
        assert!(
            !metrics.contains("no-such-path-4711"),
            "unmatched path became a label"
        );
        assert!(metrics.contains(r#"endpoint="unmatched""#), "{metrics}");
    }
}

#[tokio::test]
async fn background_services_report_health_and_lag() {
    let env = TestEnv::new().await;
    let http = reqwest::Client::new();
    let relay_port = free_port();
    let projectors_port = free_port();
    let reminders_port = free_port();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let projectors_addr = format!("127.0.0.1:{projectors_port}");
    let reminders_addr = format!("127.0.0.1:{reminders_port}");
    let _relay = ServiceProcess::spawn(
        "medflow-relay",
        &["--http-addr", &relay_addr],
        &env.env_vars(),
    );
    let _projectors = ServiceProcess::spawn(
        "medflow-projectors",
        &["--http-addr", &projectors_addr],
        &env.env_vars(),
    );
    let _reminders = ServiceProcess::spawn(
        "medflow-reminder-service",
        &["--http-addr", &reminders_addr],
        &env.env_vars(),
    );

    for (addr, metric) in [
        (&relay_addr, Some("medflow_relay_lag_events")),
        (&projectors_addr, Some("medflow_projector_lag_messages")),
        (&reminders_addr, None),
    ] {
        let http = http.clone();
        let url = format!("http://{addr}/health/ready");
        eventually(
            Duration::from_secs(30),
            &format!("{url} to answer 200"),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let response = http.get(&url).send().await.ok()?;
                    (response.status() == StatusCode::OK).then_some(())
                }
            },
        )
        .await;
        if let Some(metric) = metric {
            let url = format!("http://{addr}/metrics");
            eventually(
                Duration::from_secs(30),
                &format!("{metric} at {url}"),
                || {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let text = http.get(&url).send().await.ok()?.text().await.ok()?;
                        text.contains(metric).then_some(())
                    }
                },
            )
            .await;
        }
    }
}

/// A projector that is behind and cannot apply anything (its read-model writes are
/// refused) fails readiness and shows the stall in its metrics, although PostgreSQL and
/// the broker both respond. Once the writes are allowed again, it catches up and is
/// ready again.
#[tokio::test]
async fn stalled_projector_fails_readiness() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    env.start_relay();
    let api = medflow_tests::api::Api::new(&command, &command);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut vars = env.env_vars();
    vars.push(("MEDFLOW_CONSUMER_STALL_LIMIT_SECS".into(), "3".into()));
    let _projectors = ServiceProcess::spawn("medflow-projectors", &["--http-addr", &addr], &vars);
    let http = reqwest::Client::new();
    let ready_url = format!("http://{addr}/health/ready");
    let readiness = || {
        let (http, url) = (http.clone(), ready_url.clone());
        async move {
            let response = http.get(&url).send().await.ok()?;
            let status = response.status();
            Some((status, response.json::<Value>().await.ok()?))
        }
    };
    eventually(
        Duration::from_secs(30),
        "the projectors to be ready",
        || async {
            let (status, _) = readiness().await?;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    api.register_ok("patient", "stall-first@example.test", "Stall First")
        .await;
    let owner = env.owner_client().await;
    eventually(
        Duration::from_secs(30),
        "the first account projected",
        || async {
            let row = owner
                .query_one("SELECT count(*) FROM account_directory", &[])
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;

    // The projection's writes now fail and are retried. (A lock held in an open
    // transaction would hold back the relay as well, so nothing would reach Kafka.)
    owner
        .batch_execute("REVOKE INSERT ON account_directory FROM medflow_app")
        .await
        .unwrap();
    for index in 0..3 {
        api.register_ok("patient", &format!("stall-{index}@example.test"), "Stall")
            .await;
    }
    let body = eventually(
        Duration::from_secs(60),
        "readiness to report the stalled projection",
        || async {
            let (status, body) = readiness().await?;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
        },
    )
    .await;
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(body["checks"]["kafka"], "ok", "{body}");
    let consumers = body["checks"]["consumers"].as_str().unwrap();
    assert!(
        consumers.starts_with("accounts is ") && consumers.contains("committed nothing"),
        "{consumers}"
    );
    // The gauge is refreshed with the lag, every 5 s, so it may trail readiness.
    let accounts_sample = |metrics: &str, name: &str| {
        medflow_cli::metrics::parse(metrics)
            .into_iter()
            .find(|sample| {
                sample.name == name
                    && medflow_cli::metrics::label(&sample.labels, "projection") == Some("accounts")
            })
            .map(|sample| sample.value)
    };
    let metrics_url = format!("http://{addr}/metrics");
    let metrics = eventually(
        Duration::from_secs(30),
        "the stall in medflow_projector_stalled_seconds",
        || async {
            let text = http
                .get(&metrics_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let stalled = accounts_sample(&text, "medflow_projector_stalled_seconds")?;
            (stalled >= 3.0).then_some(text)
        },
    )
    .await;
    let failures = accounts_sample(&metrics, "medflow_projector_failures_total");
    assert!(failures.is_some_and(|count| count >= 1.0), "{metrics}");

    owner
        .batch_execute("GRANT INSERT ON account_directory TO medflow_app")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the projectors to be ready again",
        || async {
            let (status, _) = readiness().await?;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let row = owner
        .query_one("SELECT count(*) FROM account_directory", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let env = TestEnv::new().await;
    let command = env.start_command_api().await;
    let query = env.start_query_api().await;
    let http = reqwest::Client::new();
    let cases = [
        (http.put(format!("{command}/accounts")), "POST"),
        (http.get(format!("{command}/sessions")), "POST, DELETE"),
        (http.post(format!("{query}/me")), "GET"),
        (http.delete(format!("{query}/admin/accounts")), "GET"),
    ];
    for (request, allowed) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["allow"], allowed);
        let problem =
            medflow_tests::api::expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(problem["type"], "urn:medflow:problem:method-not-allowed");
    }
}
