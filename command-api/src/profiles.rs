//! Doctor profiles kept in memory by version, so that a booking does not read and fold
//! the doctor's events again while the profile has not changed.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use cqrs_es::AggregateError;
use lru::LruCache;
use medflow_domain::doctor::{DoctorError, DoctorProfile};
use medflow_domain::values::AccountId;
use medflow_infra::event_store::CommandBus;

/// Doctor profiles with the sequence of the last event folded into each.
pub struct ProfileCache {
    entries: Mutex<LruCache<AccountId, (Arc<DoctorProfile>, usize)>>,
}

impl ProfileCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Returns the doctor's profile and its sequence, given `current`, the sequence of
    /// the profile's last event as just read from the event store. A cached profile is
    /// used only at exactly that sequence. Otherwise the profile is loaded, and its
    /// sequence may then be past `current` if the doctor changed it meanwhile.
    pub async fn at_sequence(
        &self,
        doctors: &CommandBus<DoctorProfile>,
        doctor: AccountId,
        current: usize,
    ) -> Result<(Arc<DoctorProfile>, usize), AggregateError<DoctorError>> {
        if let Some((profile, sequence)) = self.lock().get(&doctor) {
            if *sequence == current {
                return Ok((Arc::clone(profile), current));
            }
        }
        let (profile, sequence) = doctors.load(&doctor.to_string()).await?;
        let profile = Arc::new(profile);
        self.lock().put(doctor, (Arc::clone(&profile), sequence));
        Ok((profile, sequence))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<AccountId, (Arc<DoctorProfile>, usize)>> {
        self.entries.lock().expect("profile cache lock poisoned")
    }
}
