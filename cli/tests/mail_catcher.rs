//! Sends a message with lettre to the stack's SMTP catcher (maildev) and reads it back
//! over maildev's REST API.
//!
//! Needs a running stack (`cargo run -p medflow-cli -- stack up`).

use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

fn port(variable: &str, default: u16) -> u16 {
    std::env::var(variable)
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{variable}='{value}' is not a port"))
        })
        .unwrap_or(default)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Polls `GET /api/email` until a message with `subject` appears, for up to 10 s.
async fn find_by_subject(web_port: u16, subject: &str) -> Option<Value> {
    let url = format!("http://127.0.0.1:{web_port}/api/email");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let messages: Vec<Value> = http()
            .get(&url)
            .send()
            .await
            .expect("GET /api/email")
            .error_for_status()
            .expect("GET /api/email status")
            .json()
            .await
            .expect("GET /api/email body");
        if let Some(found) = messages
            .into_iter()
            .find(|message| message["subject"] == subject)
        {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test]
async fn smtp_message_readable_over_rest_api() {
    let smtp_port = port("MEDFLOW_SMTP_PORT", 1025);
    let web_port = port("MEDFLOW_MAILDEV_WEB_PORT", 1080);
    let subject = format!("Appointment reminder {}", uuid::Uuid::new_v4());
    let body = "Your consultation starts in 15 minutes.";

    let message = Message::builder()
        .from(
            "MedFlow <no-reply@medflow.test>"
                .parse()
                .expect("from address"),
        )
        .to("patient@medflow.test".parse().expect("to address"))
        .subject(&subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .expect("message");
    // maildev offers no TLS on this port, and the connection never leaves 127.0.0.1.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp_port)
        .build();
    let response = transport.send(message).await.unwrap_or_else(|error| {
        panic!(
            "SMTP send to 127.0.0.1:{smtp_port} failed (is `medflow stack up` running?): {error}"
        )
    });
    assert!(response.is_positive());

    let received = find_by_subject(web_port, &subject)
        .await
        .expect("message listed by GET /api/email");
    assert_eq!(received["from"][0]["address"], "no-reply@medflow.test");
    assert_eq!(received["from"][0]["name"], "MedFlow");
    assert_eq!(received["to"][0]["address"], "patient@medflow.test");
    assert_eq!(received["text"].as_str().map(str::trim_end), Some(body));

    let id = received["id"].as_str().expect("message id");
    let deleted = http()
        .delete(format!("http://127.0.0.1:{web_port}/api/email/{id}"))
        .send()
        .await
        .expect("DELETE /api/email/{id}");
    assert!(
        deleted.status().is_success(),
        "DELETE returned {}",
        deleted.status()
    );
    assert!(
        find_by_subject_once(web_port, &subject).await.is_none(),
        "message still listed after DELETE"
    );
}

async fn find_by_subject_once(web_port: u16, subject: &str) -> Option<Value> {
    let messages: Vec<Value> = http()
        .get(format!("http://127.0.0.1:{web_port}/api/email"))
        .send()
        .await
        .expect("GET /api/email")
        .json()
        .await
        .expect("GET /api/email body");
    messages
        .into_iter()
        .find(|message| message["subject"] == subject)
}
