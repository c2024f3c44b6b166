//! A constant-rate (open-loop) load generator for the query API. Latency is measured from
//! each request's scheduled send time, so a stalled server also delays the requests
//! queued behind it (no coordinated omission).
//!
//! Requests go over a fixed set of keep-alive connections: a request waits, in
//! scheduling order, for a free connection, and that wait counts as latency. The first
//! version opened a new connection for every request that found no idle one, which at
//! 400 requests/s and more failed every request (see docs/benchmarks.md).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::seed::Seeded;

#[derive(Clone, Copy)]
pub enum Target {
    Directory,
    Slots,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Directory => "GET /doctors?limit=20 (next free slot per doctor)",
            Target::Slots => "GET /doctors/{id}/slots over 14 days",
        }
    }
}

/// Failed requests by cause: the error's whole source chain, or the HTTP status.
#[derive(Default)]
pub struct Failures {
    by_cause: BTreeMap<String, u64>,
}

impl Failures {
    pub fn record(&mut self, cause: String) {
        *self.by_cause.entry(cause).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.by_cause.values().sum()
    }

    /// Returns one line per cause, most frequent first.
    pub fn lines(&self) -> Vec<String> {
        let mut causes: Vec<(&String, &u64)> = self.by_cause.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1));
        causes
            .into_iter()
            .map(|(cause, count)| format!("  {count} × {cause}"))
            .collect()
    }
}

/// Formats an error with its whole source chain, as `{:#}` does for anyhow.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds from 1 µs to 60 s, three significant digits.
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

/// Formats a microsecond value of a histogram as milliseconds.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

pub struct Report {
    pub rate: u32,
    pub sent: u64,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
    pub failures: Failures,
    /// Largest delay between a request's scheduled time and the moment the generator
    /// handed it to a connection; large values mean the client, not the server, lagged.
    pub max_dispatch_delay: Duration,
}

/// Target of both query scenarios: p99 latency below this many microseconds at
/// `TARGET_RATE` requests per second or more, with no failed request.
const TARGET_P99_MICROS: u64 = 10_000;
const TARGET_RATE: u32 = 1_000;

impl Report {
    pub fn targets(&self) -> Vec<crate::report::TargetRow> {
        let p99 = self.histogram.value_at_quantile(0.99);
        vec![crate::report::TargetRow::new(
            format!(
                "p99 < {} at {TARGET_RATE} requests/s",
                ms(TARGET_P99_MICROS)
            ),
            format!(
                "p99 {} (p50 {}) at {}/s, {} failed",
                ms(p99),
                ms(self.histogram.value_at_quantile(0.5)),
                self.rate,
                self.failures.total()
            ),
            p99 < TARGET_P99_MICROS && self.rate >= TARGET_RATE && self.failures.total() == 0,
        )]
    }

    pub fn line(&self, label: &str) -> String {
        let quantile = |q: f64| ms(self.histogram.value_at_quantile(q));
        let mut text = format!(
            "{label}: {} requests at {}/s for {:.0} s, {} failed; latency p50 {}, p99 {}, p99.9 {}, max {}; \
             longest wait for a connection {:.2} ms",
            self.sent,
            self.rate,
            self.seconds,
            self.failures.total(),
            quantile(0.5),
            quantile(0.99),
            quantile(0.999),
            ms(self.histogram.max()),
            self.max_dispatch_delay.as_secs_f64() * 1000.0,
        );
        for line in self.failures.lines() {
            text.push('\n');
            text.push_str(&line);
        }
        text
    }
}

/// A fixed set of HTTP/1.1 keep-alive connections. Each `reqwest::Client` keeps at most
/// one idle connection and is lent to one request at a time, so the set never grows
/// past `size` connections; a connection the server closed is reopened on next use.
struct Connections {
    clients: Mutex<Vec<reqwest::Client>>,
    permits: Semaphore,
}

impl Connections {
    fn new(size: usize) -> anyhow::Result<Self> {
        let clients = (0..size)
            .map(|_| {
                reqwest::Client::builder()
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .pool_idle_timeout(None)
                    .tcp_nodelay(true)
                    .timeout(Duration::from_secs(30))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: Mutex::new(clients),
            permits: Semaphore::new(size),
        })
    }
}

fn url(seeded: &Seeded, target: Target, number: u64) -> String {
    match target {
        Target::Directory => {
            // Cycle through a few filters so the page is not always the same rows.
            let filters = [
                "",
                "&specialty=cardiology",
                "&language=en",
                "&specialty=neurology",
            ];
            format!(
                "{}/doctors?limit=20{}",
                seeded.api.query,
                filters[(number % 4) as usize]
            )
        }
        Target::Slots => {
            let doctor = seeded.doctors[(number as usize * 7919) % seeded.doctors.len()];
            let from = Utc::now() + chrono::TimeDelta::days(1);
            let to = from + chrono::TimeDelta::days(14);
            let format =
                |at: chrono::DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                "{}/doctors/{doctor}/slots?from={}&to={}",
                seeded.api.query,
                format(from),
                format(to)
            )
        }
    }
}

/// Sends `rate` requests per second over `connections` keep-alive connections for a
/// warm-up of a fifth of `duration`, then for `duration` while recording latency.
pub async fn run(
    seeded: &Seeded,
    target: Target,
    rate: u32,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Report> {
    let pool = Arc::new(Connections::new(connections)?);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let warm_up = duration / 5;
    let histogram = Arc::new(Mutex::new(new_histogram()?));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let max_dispatch_delay = Arc::new(Mutex::new(Duration::ZERO));
    let total = ((warm_up + duration).as_secs_f64() * f64::from(rate)) as u64;
    let warm_up_requests = (warm_up.as_secs_f64() * f64::from(rate)) as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for number in 0..total {
        let scheduled = start + interval.mul_f64(number as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let url = url(seeded, target, number);
        let token = seeded.token(number).to_owned();
        let pool = Arc::clone(&pool);
        let histogram = Arc::clone(&histogram);
        let failures = Arc::clone(&failures);
        let max_dispatch_delay = Arc::clone(&max_dispatch_delay);
        let measured = number >= warm_up_requests;
        tasks.push(tokio::spawn(async move {
            let permit = pool
                .permits
                .acquire()
                .await
                .expect("semaphore never closed");
            let client = pool
                .clients
                .lock()
                .unwrap()
                .pop()
                .expect("one client per permit");
            let dispatched = scheduled.elapsed();
            let outcome = send(&client, &url, &token).await;
            pool.clients.lock().unwrap().push(client);
            drop(permit);
            let micros = scheduled.elapsed().as_micros().max(1) as u64;
            if !measured {
                return;
            }
            if let Err(cause) = outcome {
                failures.lock().unwrap().record(cause);
            }
            let mut longest = max_dispatch_delay.lock().unwrap();
            *longest = (*longest).max(dispatched);
            drop(longest);
            histogram
                .lock()
                .unwrap()
                .record(micros.min(60_000_000))
                .expect("value within bounds");
        }));
    }
    futures::future::join_all(tasks).await;
    let histogram = std::mem::replace(&mut *histogram.lock().unwrap(), new_histogram()?);
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let max_dispatch_delay = *max_dispatch_delay.lock().unwrap();
    Ok(Report {
        rate,
        sent: total - warm_up_requests,
        seconds: duration.as_secs_f64(),
        histogram,
        failures,
        max_dispatch_delay,
    })
}

/// Sends one GET and reads the whole body; returns the failure cause otherwise.
async fn send(client: &reqwest::Client, url: &str, token: &str) -> Result<(), String> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| error_chain(&error))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| error_chain(&error))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {text}"));
    }
    Ok(())
}
