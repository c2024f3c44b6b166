//! Injectable time source, so expiry rules can be tested without sleeping.

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// Clock that moves only when advanced, for exact tests of expiry rules.
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn starting_now() -> Arc<Self> {
        Self::starting_at(Utc::now())
    }

    pub fn starting_at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: std::sync::Mutex::new(start),
        })
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().expect("clock lock poisoned");
        *now += by;
    }

    /// Moves the clock to `at`, forwards or backwards.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("clock lock poisoned") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock poisoned")
    }
}

/// Wall clock moved by a fixed offset and optionally running faster than real time:
/// `now = start + offset + (elapsed real time × speed)`. It lets the reminder service
/// reach due times in a demo or in a test of a separate process without waiting.
pub struct ShiftedClock {
    started: std::time::Instant,
    origin: DateTime<Utc>,
    speed: f64,
}

impl ShiftedClock {
    /// Starts at the real time plus `offset`, running `speed` times as fast as real time.
    pub fn new(offset: chrono::TimeDelta, speed: f64) -> Arc<Self> {
        Arc::new(Self {
            started: std::time::Instant::now(),
            origin: Utc::now() + offset,
            speed,
        })
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started.elapsed().as_secs_f64() * self.speed;
        self.origin + chrono::TimeDelta::microseconds((elapsed * 1_000_000.0) as i64)
    }
}
