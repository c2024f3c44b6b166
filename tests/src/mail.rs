//! Reads the messages that the stack's mail catcher (maildev) received, over its REST
//! API. Tests share one catcher, so they look only at messages to their own addresses.

use std::time::Duration;

use serde_json::Value;

fn web_url() -> String {
    let port = std::env::var("MEDFLOW_MAILDEV_WEB_PORT").unwrap_or_else(|_| "1080".into());
    format!("http://127.0.0.1:{port}")
}

/// Deletes every message the catcher holds. Only for benchmarks that fill it: tests
/// share the catcher and must not clear each other's messages.
pub async fn delete_all() -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .delete(format!("{}/api/email/all", web_url()))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "the mail catcher answered {} to deleting every message",
        response.status()
    );
    Ok(())
}

/// Returns every message addressed to `address`, oldest first.
pub async fn messages_to(address: &str) -> Vec<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let messages: Vec<Value> = client
        .get(format!("{}/api/email", web_url()))
        .send()
        .await
        .expect("mail catcher reachable; run `medflow stack up`")
        .json()
        .await
        .expect("mail catcher returns JSON");
    messages
        .into_iter()
        .filter(|message| {
            message["to"].as_array().is_some_and(|to| {
                to.iter()
                    .any(|recipient| recipient["address"].as_str() == Some(address))
            })
        })
        .collect()
}

/// Waits until `address` has received `count` messages, for up to `timeout`; returns
/// them. Panics with the number that did arrive otherwise.
pub async fn wait_for_messages(address: &str, count: usize, timeout: Duration) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let messages = messages_to(address).await;
        if messages.len() >= count {
            return messages;
        }
        assert!(
            started.elapsed() < timeout,
            "{address} received {} of {count} messages within {timeout:?}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
