//! Demo steps outside the two APIs: the patient's reminder e-mail in the mail catcher,
//! and the admin's look at the verification queue and the platform's health metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use medflow_cli::metrics::{self, Sample};
use serde_json::Value;

use super::{expect, step, Demo};

/// Waits until the mail catcher contains a reminder addressed to `email`.
pub async fn reminder_arrives(demo: &Demo, email: &str) -> anyhow::Result<()> {
    let wait = Duration::from_secs(demo.settings.reminder_wait_secs);
    if wait.is_zero() {
        step("skipped waiting for the reminder e-mail (--reminder-wait-secs 0)");
        return Ok(());
    }
    let url = format!("{}/api/email", demo.settings.mail_url);
    let started = Instant::now();
    loop {
        let messages: Value = demo
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("the mail catcher at {url} is not reachable"))?
            .json()
            .await?;
        let found = messages.as_array().and_then(|messages| {
            messages.iter().find(|message| {
                message["to"].as_array().is_some_and(|recipients| {
                    recipients
                        .iter()
                        .any(|recipient| recipient["address"] == email)
                })
            })
        });
        if let Some(message) = found {
            step(&format!(
                "the reminder reached the mail catcher after {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                message["subject"]
            ));
            return Ok(());
        }
        expect(
            started.elapsed() < wait,
            &format!(
                "a reminder e-mail within {} s; the reminder service must run with a sped-up \
                 clock (MEDFLOW_CLOCK_SPEED, as scripts/run-platform.sh sets it), or pass \
                 --reminder-wait-secs 0",
                wait.as_secs()
            ),
        )?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Shows what an admin watches: doctors waiting for review, relay lag, projector lag per
/// projection and the reminder backlog, read from the services' Prometheus metrics.
pub async fn review_health(demo: &Demo, admin: &str) -> anyhow::Result<()> {
    let queue = demo
        .get(
            admin,
            &format!(
                "{}/admin/doctors/verification-queue",
                demo.settings.platform.query_url
            ),
        )
        .await?;
    let waiting = queue["doctors"].as_array().map_or(0, Vec::len);
    step(&format!(
        "admin's verification queue: {waiting} doctors waiting for review{}",
        if queue["next_cursor"].is_null() {
            ""
        } else {
            " on the first page"
        }
    ));

    let relay = metrics(demo, &demo.settings.relay_url).await?;
    let projectors = metrics(demo, &demo.settings.projectors_url).await?;
    let reminders = metrics(demo, &demo.settings.reminders_url).await?;
    let relay_lag = total(&relay, "medflow_relay_lag_events");
    let published = total(&relay, "medflow_relay_published_events_total");
    step(&format!(
        "relay: {relay_lag:.0} events waiting to be published, {published:.0} published since it started"
    ));
    let mut lag_by_projection: BTreeMap<String, f64> = BTreeMap::new();
    for sample in projectors
        .iter()
        .filter(|sample| sample.name == "medflow_projector_lag_messages")
    {
        let projection = metrics::label(&sample.labels, "projection")
            .unwrap_or("unknown")
            .to_owned();
        *lag_by_projection.entry(projection).or_default() += sample.value;
    }
    let lags: Vec<String> = lag_by_projection
        .iter()
        .map(|(projection, lag)| format!("{projection} {lag:.0}"))
        .collect();
    step(&format!(
        "projector lag in Kafka messages: {}",
        if lags.is_empty() {
            "no consumer has reported yet".to_owned()
        } else {
            lags.join(", ")
        }
    ));
    step(&format!(
        "reminder backlog: {:.0} waiting, {:.0} sent since the service started",
        total(&reminders, "medflow_reminders_pending"),
        total(&reminders, "medflow_reminders_sent_total"),
    ));
    Ok(())
}

/// Reads the samples of `{base}/metrics`.
async fn metrics(demo: &Demo, base: &str) -> anyhow::Result<Vec<Sample>> {
    let url = format!("{base}/metrics");
    let text = demo
        .http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} is not reachable"))?
        .text()
        .await?;
    Ok(metrics::parse(&text))
}

/// Adds up the samples named `name`; a metric not exported yet counts as 0.
fn total(samples: &[Sample], name: &str) -> f64 {
    metrics::sum(samples, name).unwrap_or(0.0)
}
