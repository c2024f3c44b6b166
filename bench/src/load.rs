//! A constant-rate load generator. Latency is measured from each request's scheduled
//! send time, so a stalled server also delays the requests queued behind it
//! (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use crate::seed::Seeded;

#[derive(Clone, Copy)]
pub enum Target {
    Directory,
    Slots,
}

pub struct Report {
    pub sent: u64,
    pub failed: u64,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
}

impl Report {
    pub fn line(&self, label: &str) -> String {
        let ms = |quantile: f64| self.histogram.value_at_quantile(quantile) as f64 / 1000.0;
        format!(
            "{label}: {} requests in {:.1} s ({:.0}/s), {} failed; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.sent,
            self.seconds,
            self.sent as f64 / self.seconds,
            self.failed,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            self.histogram.max() as f64 / 1000.0
        )
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

/// Sends `rate` requests per second for a warm-up of a fifth of `duration`, then for
/// `duration` while recording latency.
pub async fn run(
    seeded: &Seeded,
    target: Target,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let warm_up = duration / 5;
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = ((warm_up + duration).as_secs_f64() * f64::from(rate)) as u64;
    let warm_up_requests = (warm_up.as_secs_f64() * f64::from(rate)) as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for number in 0..total {
        let scheduled = start + interval * number as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let request = http
            .get(url(seeded, target, number))
            .bearer_auth(&seeded.token);
        let histogram = Arc::clone(&histogram);
        let failed = Arc::clone(&failed);
        let measured = number >= warm_up_requests;
        tasks.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.bytes().await;
                    if !status.is_success() && number % 5000 == 0 {
                        let text = body.as_ref().map(|bytes| {
                            String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
                        });
                        eprintln!("request {number} failed with {status}: {text:?}");
                    }
                    status.is_success() && body.is_ok()
                }
                Err(error) => {
                    if number % 500 == 0 || number < 3 {
                        let mut chain = format!("{error}");
                        let mut source = std::error::Error::source(&error);
                        while let Some(cause) = source {
                            chain.push_str(&format!(": {cause}"));
                            source = cause.source();
                        }
                        eprintln!("request {number} failed: {chain}");
                    }
                    false
                }
            };
            if !measured {
                return;
            }
            if !ok {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let micros = scheduled.elapsed().as_micros().max(1) as u64;
            let _ = histogram.lock().await.record(micros.min(60_000_000));
        }));
    }
    futures::future::join_all(tasks).await;
    let histogram = Arc::try_unwrap(histogram)
        .map_err(|_| anyhow::anyhow!("histogram still shared"))?
        .into_inner();
    Ok(Report {
        sent: total - warm_up_requests,
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        seconds: duration.as_secs_f64(),
        histogram,
    })
}
