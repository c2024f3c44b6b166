//! HTTP helpers shared by `medflow demo` and `medflow seed`.

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Client, Response};
use serde_json::Value;

/// Checks that `{base}/health/ready` returns a success status.
pub async fn check_ready(http: &Client, base: &str) -> anyhow::Result<()> {
    let response = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .with_context(|| format!("{base} is not reachable; start the platform first"))?;
    if !response.status().is_success() {
        bail!(
            "{base}/health/ready returned {}; the service is not ready",
            response.status()
        );
    }
    Ok(())
}

/// Reads a JSON body, or fails with the path, status and the problem's `detail`.
pub async fn read_success(response: Response) -> anyhow::Result<Value> {
    let status = response.status();
    let url = response.url().path().to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} returned {status}: {}", body["detail"]);
    }
    Ok(body)
}

/// Formats an instant as the RFC 3339 UTC form the APIs accept, such as
/// `2026-12-07T09:30:00Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
