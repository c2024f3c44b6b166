//! Doctor profiles kept in memory with their sequence, so that a booking reads nothing
//! before its write. The write checks the sequence (see `crate::reservations`): a
//! profile changed since, here or by another process, makes the booking check again
//! against a profile loaded from the event store.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use cqrs_es::AggregateError;
use lru::LruCache;
use medflow_domain::doctor::{DoctorError, DoctorProfile};
use medflow_domain::values::AccountId;
use medflow_infra::event_store::CommandBus;

/// A doctor profile and the sequence of the last event folded into it.
#[derive(Clone)]
pub struct VersionedProfile {
    pub profile: Arc<DoctorProfile>,
    pub sequence: usize,
    /// True when the profile was read from the event store for this request, false
    /// when it came from memory and may be behind.
    pub loaded: bool,
}

pub struct ProfileCache {
    entries: Mutex<LruCache<AccountId, (Arc<DoctorProfile>, usize)>>,
}

impl ProfileCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Returns the profile as this process last saw it, or loads it when absent.
    pub async fn remembered(
        &self,
        doctors: &CommandBus<DoctorProfile>,
        doctor: AccountId,
    ) -> Result<VersionedProfile, AggregateError<DoctorError>> {
        if let Some((profile, sequence)) = self.lock().get(&doctor) {
            return Ok(VersionedProfile {
                profile: Arc::clone(profile),
                sequence: *sequence,
                loaded: false,
            });
        }
        self.load(doctors, doctor).await
    }

    /// Loads the profile from the event store and remembers it.
    pub async fn load(
        &self,
        doctors: &CommandBus<DoctorProfile>,
        doctor: AccountId,
    ) -> Result<VersionedProfile, AggregateError<DoctorError>> {
        let (profile, sequence) = doctors.load(&doctor.to_string()).await?;
        let profile = Arc::new(profile);
        // An id without events is no doctor (yet); remembering it would only fill the
        // cache with whatever ids clients send.
        if sequence > 0 {
            let mut entries = self.lock();
            // A slower load running beside this one must not put back an older profile.
            if entries
                .peek(&doctor)
                .is_none_or(|(_, remembered)| *remembered <= sequence)
            {
                entries.put(doctor, (Arc::clone(&profile), sequence));
            }
        }
        Ok(VersionedProfile {
            profile,
            sequence,
            loaded: true,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<AccountId, (Arc<DoctorProfile>, usize)>> {
        self.entries.lock().expect("profile cache lock poisoned")
    }
}
