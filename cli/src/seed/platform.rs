//! Numbers the platform reports about itself, read from the Prometheus endpoints of the
//! relay (events published, backlog) and the projectors (Kafka consumer lag per
//! projection).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Seeder;
use crate::metrics::{label, parse, sum, Sample};

/// Maximum wait at the end of a run for the relay backlog and projection lag to reach 0.
pub(super) const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// The relay's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct RelayNumbers {
    /// `medflow_relay_published_events_total`: events published since the relay started.
    published: f64,
    /// `medflow_relay_lag_events`: events in the event table not yet published.
    backlog: f64,
}

/// The platform's view at the end of a run; `None` where a metrics endpoint was not
/// configured or not reachable.
#[derive(Debug, Clone, Default)]
pub struct PlatformNumbers {
    /// Events the relay published during the run, this run's and any other client's.
    pub events_published: Option<u64>,
    /// Relay backlog when the last request had finished.
    pub relay_backlog_at_end: Option<u64>,
    /// Kafka consumer lag per projection, summed over partitions, when the last request
    /// had finished. The projectors refresh it every few seconds.
    pub projection_lag_at_end: Option<BTreeMap<String, u64>>,
    /// Time after the last request until the relay had published as many events as
    /// the run wrote and its backlog was 0; `None` if not within [`CATCH_UP_WAIT`].
    pub relay_caught_up_after: Option<Duration>,
    /// Time after the last request until, with the relay caught up, every projection
    /// reported a lag of 0; `None` if not within [`CATCH_UP_WAIT`]. The projectors
    /// refresh the gauge every 5 s, so this time is only accurate to about 5 s.
    pub projections_caught_up_after: Option<Duration>,
}

pub async fn relay_numbers(seeder: &Seeder) -> Option<RelayNumbers> {
    let url = seeder.settings.relay_metrics_url.as_deref()?;
    let samples = scrape(seeder, url).await?;
    Some(RelayNumbers {
        published: sum(&samples, "medflow_relay_published_events_total")?,
        backlog: sum(&samples, "medflow_relay_lag_events")?,
    })
}

async fn projection_lag(seeder: &Seeder) -> Option<BTreeMap<String, u64>> {
    let url = seeder.settings.projector_metrics_url.as_deref()?;
    let samples = scrape(seeder, url).await?;
    let mut lag = BTreeMap::new();
    for sample in samples
        .iter()
        .filter(|sample| sample.name == "medflow_projector_lag_messages")
    {
        let projection = label(&sample.labels, "projection").unwrap_or("unknown");
        *lag.entry(projection.to_owned()).or_insert(0) += sample.value.max(0.0) as u64;
    }
    Some(lag)
}

/// Reads backlog and lag right after the last request, then waits up to
/// [`CATCH_UP_WAIT`] for the relay to publish the run's `events_written` events and for
/// the projections to apply them.
pub async fn settle(
    seeder: &Seeder,
    before: Option<RelayNumbers>,
    events_written: u64,
) -> PlatformNumbers {
    let finished = Instant::now();
    let relay = relay_numbers(seeder).await;
    let mut numbers = PlatformNumbers {
        projection_lag_at_end: projection_lag(seeder).await,
        relay_backlog_at_end: relay.map(|relay| relay.backlog.max(0.0) as u64),
        ..PlatformNumbers::default()
    };
    let published_since = |after: RelayNumbers| {
        let before = before?;
        // A relay restart resets its counter; the difference is meaningless then.
        if after.published < before.published {
            return None;
        }
        Some((after.published - before.published) as u64)
    };
    let relay_tracked = before.is_some() && relay.is_some();
    let mut relay = relay;
    loop {
        if numbers.relay_caught_up_after.is_none() {
            let published = relay.and_then(published_since);
            numbers.events_published = published;
            let done = relay.is_some_and(|relay| relay.backlog <= 0.0)
                && published.is_some_and(|published| published >= events_written);
            if done {
                numbers.relay_caught_up_after = Some(finished.elapsed());
            }
        }
        if numbers.relay_caught_up_after.is_some() || !relay_tracked {
            let lag = projection_lag(seeder).await;
            if lag.is_some_and(|lag| lag.values().all(|value| *value == 0)) {
                numbers.projections_caught_up_after = Some(finished.elapsed());
            }
        }
        let waiting_for_relay = relay_tracked && numbers.relay_caught_up_after.is_none();
        let waiting_for_projections = numbers.projection_lag_at_end.is_some()
            && numbers.projections_caught_up_after.is_none();
        if !(waiting_for_relay || waiting_for_projections) || finished.elapsed() > CATCH_UP_WAIT {
            return numbers;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        relay = relay_numbers(seeder).await;
    }
}

async fn scrape(seeder: &Seeder, url: &str) -> Option<Vec<Sample>> {
    let response = seeder
        .client
        .http()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    Some(parse(&text))
}
