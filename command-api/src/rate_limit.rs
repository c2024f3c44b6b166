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

    /// Counts one attempt against the address limit and, if that allows it, against the
    /// account limit; returns how long to wait if either is spent. An attempt the
    /// address limit rejects does not use up the account's quota, so a busy address
    /// cannot lock an account out for others.
    pub fn check(&self, account: &EmailIndex, address: IpAddr) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        self.per_address
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))?;
        self.per_account
            .check_key(&account.0)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// Forgets keys whose quota has fully replenished, bounding memory.
    pub fn forget_idle(&self) {
        self.per_account.retain_recent();
        self.per_address.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn address_rejection_spares_account_quota() {
        let limiter = LoginLimiter::new(2, 1);
        let account = EmailIndex("account-a".to_owned());
        assert!(limiter.check(&account, address(1)).is_ok());
        // The address is spent; the account's second attempt is still unused.
        assert!(limiter.check(&account, address(1)).is_err());
        assert!(limiter.check(&account, address(2)).is_ok());
        // Now the account is spent, from any address.
        let wait = limiter.check(&account, address(3)).unwrap_err();
        assert!(wait > Duration::ZERO);
    }

    #[test]
    fn accounts_limited_separately() {
        let limiter = LoginLimiter::new(1, 10);
        let first = EmailIndex("account-a".to_owned());
        let second = EmailIndex("account-b".to_owned());
        assert!(limiter.check(&first, address(1)).is_ok());
        assert!(limiter.check(&first, address(1)).is_err());
        assert!(limiter.check(&second, address(1)).is_ok());
    }
}
