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
