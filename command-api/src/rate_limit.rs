//! Login rate limits per account and per client address (governor, in memory).
//!
//! NOTE: limits are per process; several command-API replicas each allow the full
//! quota. A shared store would be needed to make them global.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use medflow_domain::values::EmailIndex;

#[derive(Clone)]
pub struct LoginLimiter {
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl LoginLimiter {
    pub fn new(per_account_per_minute: u32, per_address_per_minute: u32) -> Self {
        let quota = |per_minute: u32| {
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("non-zero"))
        };
        Self {
            per_account: Arc::new(RateLimiter::keyed(quota(per_account_per_minute))),
            per_address: Arc::new(RateLimiter::keyed(quota(per_address_per_minute))),
        }
    }

    /// Counts one attempt against both limits; returns how long to wait if either is spent.
    pub fn check(&self, account: &EmailIndex, address: IpAddr) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        let address_result = self.per_address.check_key(&address);
        let account_result = self.per_account.check_key(&account.0);
        let wait = [address_result.err(), account_result.err()]
            .into_iter()
            .flatten()
            .map(|not_until| not_until.wait_time_from(clock.now()))
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Forgets keys whose quota has fully replenished, bounding memory.
    pub fn forget_idle(&self) {
        self.per_account.retain_recent();
        self.per_address.retain_recent();
    }
}
