//! Projection lag: commands are sent at a constant rate, alternating booking and
//! cancelling per lane so slots stay free. For every accepted command the time the
//! command API responded is recorded. A watcher reads `projection_offsets` with one
//! batched query each time the database announces a commit of the `appointments`
//! projection on the `read_models` channel (and every `FALLBACK_POLL` in case an
//! announcement is lost), until the projection has applied that aggregate's sequence.
//! A lag runs from the response's wall-clock time to the database clock read by that
//! query, on the same machine's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::booking::{cancel, lanes, Lane};
use crate::load::{ms, new_histogram, Failures};
use crate::seed::{book, Booking, Seeded};

const FALLBACK_POLL: Duration = Duration::from_millis(100);
/// A command whose projection has not caught up after this long is counted as missing.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

pub struct LagReport {
    pub rate: u32,
    pub seconds: f64,
    pub accepted: u64,
    pub histogram: Histogram<u64>,
    pub missing: u64,
    pub failures: Failures,
    /// Maximum and mean time one query of `projection_offsets` took. A lag value ends
    /// inside the query that saw it, after the query's snapshot.
    pub longest_poll: Duration,
    pub mean_poll: Duration,
    pub command_latency: Histogram<u64>,
}

/// Target: p99 lag below this many microseconds at `TARGET_RATE` commands per second.
const TARGET_P99_MICROS: u64 = 100_000;
const TARGET_RATE: u32 = 200;

impl LagReport {
    pub fn targets(&self) -> Vec<crate::report::TargetRow> {
        let p99 = self.histogram.value_at_quantile(0.99);
        vec![crate::report::TargetRow::new(
            format!(
                "command accepted → projected, p99 < {} at {TARGET_RATE} commands/s",
                ms(TARGET_P99_MICROS)
            ),
            format!(
                "p99 {} (p50 {}) at {}/s, {} not projected, {} failed",
                ms(p99),
                ms(self.histogram.value_at_quantile(0.5)),
                self.rate,
                self.missing,
                self.failures.total()
            ),
            p99 < TARGET_P99_MICROS
                && self.rate >= TARGET_RATE
                && self.missing == 0
                && self.failures.total() == 0,
        )]
    }

    pub fn lines(&self) -> String {
        let quantile = |histogram: &Histogram<u64>, q: f64| ms(histogram.value_at_quantile(q));
        let mut text = format!(
            "projection lag (command response → appointments projection applied its sequence), \
             {}/s for {:.0} s: {} commands accepted, {} not projected within {} s, {} failed; \
             lag p50 {}, p99 {}, max {}; command latency p50 {}, p99 {}; \
             offsets read after each announced commit (at least every {} ms), one read took \
             {:.2} ms on average and {:.2} ms at most",
            self.rate,
            self.seconds,
            self.accepted,
            self.missing,
            GIVE_UP_AFTER.as_secs(),
            self.failures.total(),
            quantile(&self.histogram, 0.5),
            quantile(&self.histogram, 0.99),
            ms(self.histogram.max()),
            quantile(&self.command_latency, 0.5),
            quantile(&self.command_latency, 0.99),
            FALLBACK_POLL.as_millis(),
            self.mean_poll.as_secs_f64() * 1000.0,
            self.longest_poll.as_secs_f64() * 1000.0,
        );
        for line in self.failures.lines() {
            text.push('\n');
            text.push_str(&line);
        }
        text
    }
}

/// A command waiting for its projection: aggregate id, sequence, and when the command
/// API responded.
/// Aggregate id, sequence and the wall-clock time of the command's response.
type Pending = Vec<(String, i64, DateTime<Utc>)>;

struct LaneState {
    lane: Lane,
    next_slot: usize,
    booked: Option<String>,
}

/// Sends `rate` commands per second over `lane_count` lanes for a warm-up of a fifth of
/// `duration` and then `duration`; measures the lag of commands accepted after the
/// warm-up.
pub async fn run(
    seeded: &Seeded,
    rate: u32,
    duration: Duration,
    lane_count: usize,
    skip_doctors: usize,
) -> anyhow::Result<LagReport> {
    let available = seeded.doctors.len().saturating_sub(skip_doctors);
    anyhow::ensure!(
        available >= lane_count,
        "projection-lag needs {lane_count} doctors besides the {skip_doctors} of the throughput run"
    );
    let doctors = &seeded.doctors[available - lane_count..available];
    let lanes: Vec<Arc<tokio::sync::Mutex<LaneState>>> = lanes(seeded, doctors)
        .await?
        .into_iter()
        .map(|lane| {
            Arc::new(tokio::sync::Mutex::new(LaneState {
                lane,
                next_slot: 0,
                booked: None,
            }))
        })
        .collect();

    let pending: Arc<Mutex<Pending>> = Arc::new(Mutex::new(Vec::new()));
    let lags = Arc::new(Mutex::new(new_histogram()?));
    let command_latency = Arc::new(Mutex::new(new_histogram()?));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let stop_watching = CancellationToken::new();
    let watcher = tokio::spawn(watch(
        seeded.env.owner_url(),
        Arc::clone(&pending),
        Arc::clone(&lags),
        stop_watching.clone(),
    ));

    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let warm_up = duration / 5;
    let total = ((warm_up + duration).as_secs_f64() * f64::from(rate)) as u64;
    let warm_up_commands = (warm_up.as_secs_f64() * f64::from(rate)) as u64;
    eprintln!(
        "projection lag: {rate} commands/s over {lane_count} lanes, {:.0} s warm-up and {:.0} s measured",
        warm_up.as_secs_f64(),
        duration.as_secs_f64()
    );
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for number in 0..total {
        let scheduled = start + interval.mul_f64(number as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let lane = Arc::clone(&lanes[number as usize % lanes.len()]);
        let command_url = seeded.api.command.clone();
        let pending = Arc::clone(&pending);
        let failures = Arc::clone(&failures);
        let command_latency = Arc::clone(&command_latency);
        let measured = number >= warm_up_commands;
        tasks.push(tokio::spawn(async move {
            let mut state = lane.lock().await;
            let outcome = next_command(&mut state, &command_url).await;
            let answered = Instant::now();
            let answered_at = Utc::now();
            drop(state);
            match outcome {
                Ok((aggregate_id, sequence)) if measured => {
                    let micros = (answered - scheduled).as_micros().max(1) as u64;
                    let _ = command_latency.lock().unwrap().record(micros);
                    pending
                        .lock()
                        .unwrap()
                        .push((aggregate_id, sequence as i64, answered_at));
                }
                Ok(_) => {}
                Err(cause) => failures.lock().unwrap().record(cause),
            }
        }));
    }
    futures::future::join_all(tasks).await;
    let accepted = command_latency.lock().unwrap().len();

    // Wait until every accepted command is projected or has waited too long.
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while !pending.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_watching.cancel();
    let (longest_poll, mean_poll) = watcher.await??;
    let missing = pending.lock().unwrap().len() as u64;
    let histogram = std::mem::replace(&mut *lags.lock().unwrap(), new_histogram()?);
    let command_latency =
        std::mem::replace(&mut *command_latency.lock().unwrap(), new_histogram()?);
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    Ok(LagReport {
        rate,
        seconds: duration.as_secs_f64(),
        accepted,
        histogram,
        missing,
        failures,
        longest_poll,
        mean_poll,
        command_latency,
    })
}

/// Books the lane's next slot, or cancels the appointment it holds; returns the
/// aggregate id and sequence the command API returned.
async fn next_command(state: &mut LaneState, command_url: &str) -> Result<(String, u64), String> {
    let lane = &state.lane;
    match state.booked.take() {
        Some(appointment_id) => {
            let sequence = cancel(&lane.http, command_url, &lane.token, &appointment_id)
                .await
                .map_err(|error| format!("cancellation: {error:#}"))?;
            Ok((appointment_id, sequence))
        }
        None => {
            let start = lane.slots[state.next_slot % lane.slots.len()].clone();
            state.next_slot += 1;
            match book(&lane.http, command_url, &lane.token, lane.doctor, &start).await {
                Ok(Booking::Booked {
                    appointment_id,
                    sequence,
                }) => {
                    state.booked = Some(appointment_id.clone());
                    Ok((appointment_id, sequence))
                }
                Ok(Booking::SlotTaken) => Err("booking: 409 slot-taken".into()),
                Ok(Booking::PatientOverlap) => Err("booking: 409 patient-overlap".into()),
                Ok(Booking::SlotUnavailable) => Err("booking: 422 slot-unavailable".into()),
                Err(error) => Err(format!("booking: {error:#}")),
            }
        }
    }
}

/// Reads the projection offsets of every pending command with one query after each
/// announced commit of the `appointments` projection, records the lag of each command
/// the projection has reached, and returns the longest and the mean query duration. A
/// lag ends at PostgreSQL's `clock_timestamp()` in the query's result, read after its
/// snapshot: a commit visible to the query happened before it, so the value is an upper bound
/// that leaves out the time the result takes to reach the watcher.
async fn watch(
    owner_url: String,
    pending: Arc<Mutex<Pending>>,
    lags: Arc<Mutex<Histogram<u64>>>,
    stop: CancellationToken,
) -> anyhow::Result<(Duration, Duration)> {
    let (client, mut connection) =
        tokio_postgres::connect(&owner_url, tokio_postgres::NoTls).await?;
    let (announced, mut announcements) = tokio::sync::mpsc::unbounded_channel();
    // Polling the connection's messages also drives the queries below.
    tokio::spawn(async move {
        let mut messages =
            futures::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message {
                if notification.payload() == "appointments" && announced.send(()).is_err() {
                    break;
                }
            }
        }
    });
    client.batch_execute("LISTEN read_models").await?;
    let statement = client
        .prepare(
            "SELECT aggregate_id, last_sequence, clock_timestamp() FROM projection_offsets
             WHERE projection = 'appointments' AND aggregate_type = 'appointment'
               AND aggregate_id = ANY($1)",
        )
        .await?;
    let mut longest = Duration::ZERO;
    let mut polls = 0u32;
    let mut polling = Duration::ZERO;
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = announcements.recv() => {}
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
        }
        // One query covers every commit announced so far.
        while announcements.try_recv().is_ok() {}
        let ids: Vec<String> = pending
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let rows = client.query(&statement, &[&ids]).await?;
        let seen = Instant::now();
        longest = longest.max(seen - sent);
        polling += seen - sent;
        polls += 1;
        let reached: HashMap<String, (i64, DateTime<Utc>)> = rows
            .iter()
            .map(|row| (row.get::<_, String>(0), (row.get(1), row.get(2))))
            .collect();
        let mut lags = lags.lock().unwrap();
        pending.lock().unwrap().retain(|(id, sequence, answered)| {
            if let Some((_, read_at)) = reached.get(id).filter(|(last, _)| last >= sequence) {
                let micros = (*read_at - *answered)
                    .num_microseconds()
                    .unwrap_or(0)
                    .max(1) as u64;
                let _ = lags.record(micros);
                false
            } else {
                true
            }
        });
    }
    Ok((longest, polling.checked_div(polls).unwrap_or_default()))
}
