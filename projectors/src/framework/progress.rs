//! Stall detection: a consumer that is behind its topics and commits nothing for a
//! while is stuck (a wedged broker connection, a read model that keeps failing), even
//! though the process, PostgreSQL and the broker all respond. Readiness turns that into
//! a failed check, and a gauge shows how long it has lasted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// One lag measurement of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Messages between the committed offsets and the high watermarks, over all
    /// assigned partitions.
    pub lag: i64,
    /// Sum of the committed offsets of the assigned partitions; it grows with every
    /// commit.
    pub committed: i64,
}

#[derive(Debug, Default)]
struct State {
    /// When the consumer started, while it has not joined its group yet.
    joining_since: Option<Instant>,
    last: Option<Sample>,
    /// Start of the current stall: behind, with no commit since.
    stalled_since: Option<Instant>,
}

/// Progress of every consumer in the process, by projection name.
#[derive(Clone, Default)]
pub struct ProgressBoard {
    consumers: Arc<Mutex<BTreeMap<&'static str, State>>>,
}

impl ProgressBoard {
    /// Records that a consumer started at `now` and has not joined its group yet.
    pub fn starting(&self, projection: &'static str, now: Instant) {
        self.lock().entry(projection).or_default().joining_since = Some(now);
    }

    /// Records that the group coordinator assigned the consumer its partitions (possibly
    /// none, when the group has more members than partitions).
    pub fn joined(&self, projection: &'static str) {
        self.lock().entry(projection).or_default().joining_since = None;
    }

    /// Returns the consumers that have not joined their group yet, with the time since
    /// they started.
    pub fn joining(&self, now: Instant) -> Vec<(&'static str, Duration)> {
        self.lock()
            .iter()
            .filter_map(|(name, state)| {
                let since = state.joining_since?;
                Some((*name, now.saturating_duration_since(since)))
            })
            .collect()
    }

    /// Records a measurement taken at `now` and returns how long the consumer has been
    /// stalled (zero when it is not).
    pub fn record(&self, projection: &'static str, sample: Sample, now: Instant) -> Duration {
        let mut consumers = self.lock();
        let state = consumers.entry(projection).or_default();
        let advanced = state
            .last
            .is_none_or(|last| sample.committed != last.committed);
        if sample.lag == 0 || advanced {
            state.stalled_since = None;
        } else if state.stalled_since.is_none() {
            state.stalled_since = Some(now);
        }
        state.last = Some(sample);
        state
            .stalled_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Returns the consumers stalled for longer than `limit` at `now`, with their stall
    /// and lag.
    pub fn stalled(&self, limit: Duration, now: Instant) -> Vec<(&'static str, Duration, i64)> {
        self.lock()
            .iter()
            .filter_map(|(name, state)| {
                let since = state.stalled_since?;
                let stalled = now.saturating_duration_since(since);
                let lag = state.last.map_or(0, |last| last.lag);
                (stalled > limit).then_some((*name, stalled, lag))
            })
            .collect()
    }

    /// Builds a readiness check that fails while any consumer has not joined its group
    /// yet, or has been stalled for longer than `limit`, naming each one.
    pub fn readiness_check(&self, limit: Duration) -> medflow_infra::web::health::Check {
        let board = self.clone();
        Arc::new(move || {
            let now = Instant::now();
            let joining = board.joining(now);
            let stalled = board.stalled(limit, now);
            Box::pin(async move {
                if joining.is_empty() && stalled.is_empty() {
                    return Ok(());
                }
                let joining = joining.iter().map(|(name, waited)| {
                    format!(
                        "{name} has not joined its consumer group yet (started {} s ago)",
                        waited.as_secs()
                    )
                });
                let stalled = stalled.iter().map(|(name, stalled, lag)| {
                    format!(
                        "{name} is {lag} messages behind and has committed nothing for {} s",
                        stalled.as_secs()
                    )
                });
                let described: Vec<String> = joining.chain(stalled).collect();
                Err(described.join("; "))
            }) as BoxFuture<'static, Result<(), String>>
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, State>> {
        // The map contains plain values, so one written by a panicking thread is still
        // usable.
        self.consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lag: i64, committed: i64) -> Sample {
        Sample { lag, committed }
    }

    #[test]
    fn stall_starts_at_repeated_offsets() {
        let board = ProgressBoard::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            board.record("appointments", sample(40, 100), at(0)),
            Duration::ZERO
        );
        // Same committed offsets, still behind: the stall starts here.
        assert_eq!(
            board.record("appointments", sample(45, 100), at(5)),
            Duration::ZERO
        );
        assert_eq!(
            board.record("appointments", sample(60, 100), at(70)),
            Duration::from_secs(65)
        );
        let stalled = board.stalled(Duration::from_secs(60), at(70));
        assert_eq!(stalled, vec![("appointments", Duration::from_secs(65), 60)]);
        assert!(board.stalled(Duration::from_secs(66), at(70)).is_empty());
    }

    #[test]
    fn stall_ends_on_commit_or_empty_backlog() {
        let board = ProgressBoard::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        board.record("doctors", sample(10, 5), at(0));
        board.record("doctors", sample(10, 5), at(5));
        assert_eq!(
            board.record("doctors", sample(10, 6), at(100)),
            Duration::ZERO
        );
        board.record("doctors", sample(10, 6), at(105));
        assert_eq!(
            board.record("doctors", sample(0, 6), at(300)),
            Duration::ZERO
        );
        assert!(board.stalled(Duration::ZERO, at(400)).is_empty());
    }

    #[test]
    fn stall_skips_idle_consumer() {
        let board = ProgressBoard::default();
        let start = Instant::now();
        for secs in [0, 5, 1000] {
            board.record("accounts", sample(0, 7), start + Duration::from_secs(secs));
        }
        assert!(board
            .stalled(Duration::ZERO, start + Duration::from_secs(2000))
            .is_empty());
    }

    #[tokio::test]
    async fn readiness_waits_for_group_join() {
        let board = ProgressBoard::default();
        board.starting("reminders", Instant::now());
        let check = board.readiness_check(Duration::from_secs(120));
        let error = check().await.unwrap_err();
        assert!(
            error.starts_with("reminders has not joined its consumer group yet"),
            "{error}"
        );
        board.joined("reminders");
        assert!(check().await.is_ok());
    }

    #[tokio::test]
    async fn readiness_names_stalled_projection() {
        let board = ProgressBoard::default();
        board.record("appointments", sample(2677, 9), Instant::now());
        board.record("appointments", sample(2677, 9), Instant::now());
        board.record("accounts", sample(0, 3), Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let check = board.readiness_check(Duration::from_millis(10));
        let error = check().await.unwrap_err();
        assert!(
            error.starts_with("appointments is 2677 messages behind"),
            "{error}"
        );
        assert!(!error.contains("accounts"), "{error}");
        assert!(
            ProgressBoard::default().readiness_check(Duration::from_secs(120))()
                .await
                .is_ok()
        );
    }
}
