//! Encoded directory pages, shared by every patient who requests the same filters.
//!
//! A page is served from memory until one of three things happens. A projection it
//! derives from (`doctors`, `appointments`) commits a change, which the database
//! announces on the `read_models` channel. The minimum notice reaches the first of its
//! next free slots, so that slot can no longer be booked. Or [`MAX_AGE`] passes, which
//! bounds what nothing announces (a next slot entering the horizon, a destroyed data key).
//! While the listener is disconnected, announcements could be missed, so nothing is
//! cached or served from the cache.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::web::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;
use uuid::Uuid;

use medflow_infra::listener::Subscriber;

/// Distinct filter and cursor combinations kept.
const CAPACITY: usize = 1024;

/// Maximum time a page is served without being recomputed.
pub const MAX_AGE: TimeDelta = TimeDelta::seconds(30);

/// Projections whose changes make every kept page stale.
const SOURCES: [&str; 2] = ["doctors", "appointments"];

/// The request parameters a page depends on, after parsing. Name filters are kept as
/// their blind-index tokens, not as the text a patient typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub specialty: Option<String>,
    pub language: Option<String>,
    pub name_tokens: Vec<String>,
    pub limit: i64,
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

struct CachedPage {
    generation: u64,
    stored_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    body: Bytes,
}

pub struct DirectoryCache {
    /// Incremented on every announced change of a source projection and on every
    /// connection change of the listener. A page is served only under the generation
    /// that was current before its queries ran.
    generation: AtomicU64,
    listening: AtomicBool,
    pages: Mutex<LruCache<PageKey, CachedPage>>,
}

impl Default for DirectoryCache {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("non-zero capacity");
        Self {
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            pages: Mutex::new(LruCache::new(capacity)),
        }
    }
}

impl DirectoryCache {
    /// Returns the kept page for `key` if it is still valid at `now`.
    pub fn get(&self, key: &PageKey, now: DateTime<Utc>) -> Option<Bytes> {
        let generation = self.generation()?;
        let mut pages = self.lock();
        let page = pages.get(key)?;
        let fresh =
            page.generation == generation && page.stored_at <= now && now <= page.valid_until;
        if fresh {
            Some(page.body.clone())
        } else {
            pages.pop(key);
            None
        }
    }

    /// Returns the generation that a page computed from now on belongs to, or `None`
    /// while the listener is not connected. Read it before querying the read models.
    pub fn generation(&self) -> Option<u64> {
        if self.listening.load(Ordering::SeqCst) {
            Some(self.generation.load(Ordering::SeqCst))
        } else {
            None
        }
    }

    /// Keeps a page computed at `now` under `generation`, valid up to and including
    /// `valid_until` but for at most [`MAX_AGE`].
    pub fn put(
        &self,
        key: PageKey,
        generation: u64,
        now: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        body: Bytes,
    ) {
        let page = CachedPage {
            generation,
            stored_at: now,
            valid_until: valid_until.min(now + MAX_AGE),
            body,
        };
        self.lock().put(key, page);
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<PageKey, CachedPage>> {
        // The map stays consistent even if a holder panicked, so a poisoned lock is used
        // as it is.
        self.pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Subscriber for DirectoryCache {
    fn channel(&self) -> &'static str {
        "read_models"
    }

    fn notify(&self, projection: &str) {
        if SOURCES.contains(&projection) {
            self.invalidate();
        }
    }

    fn listening(&self) {
        // Changes committed while no connection listened were not announced.
        self.invalidate();
        self.listening.store(true, Ordering::SeqCst);
    }

    fn lost(&self) {
        self.listening.store(false, Ordering::SeqCst);
        self.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PageKey {
        PageKey {
            specialty: Some("cardiology".into()),
            language: None,
            name_tokens: Vec::new(),
            limit: 20,
            after: None,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn listening_cache() -> DirectoryCache {
        let cache = DirectoryCache::default();
        cache.listening();
        cache
    }

    /// Keeps a page under the cache's current generation.
    fn store(cache: &DirectoryCache, stored_at: DateTime<Utc>, valid_until: DateTime<Utc>) {
        let generation = cache.generation().unwrap();
        cache.put(
            key(),
            generation,
            stored_at,
            valid_until,
            Bytes::from_static(b"page"),
        );
    }

    #[test]
    fn nothing_cached_without_listener() {
        let cache = DirectoryCache::default();
        assert_eq!(cache.generation(), None);
        cache.put(key(), 0, at(0), at(10), Bytes::from_static(b"page"));
        assert_eq!(cache.get(&key(), at(1)), None);
    }

    #[test]
    fn page_served_until_valid_until() {
        let cache = listening_cache();
        store(&cache, at(0), at(10));
        assert_eq!(cache.get(&key(), at(10)), Some(Bytes::from_static(b"page")));
        assert_eq!(cache.get(&key(), at(11)), None);
    }

    #[test]
    fn page_expires_after_max_age() {
        let cache = listening_cache();
        store(&cache, at(0), at(0) + MAX_AGE * 10);
        let last = at(0) + MAX_AGE;
        assert!(cache.get(&key(), last).is_some());
        assert_eq!(cache.get(&key(), last + TimeDelta::seconds(1)), None);
    }

    #[test]
    fn clock_going_back_misses() {
        let cache = listening_cache();
        store(&cache, at(5), at(10));
        assert_eq!(cache.get(&key(), at(4)), None);
    }

    #[test]
    fn source_change_invalidates() {
        let cache = listening_cache();
        store(&cache, at(0), at(10));
        cache.notify("accounts");
        assert!(cache.get(&key(), at(1)).is_some());
        cache.notify("appointments");
        assert_eq!(cache.get(&key(), at(1)), None);
    }

    #[test]
    fn page_computed_before_change_not_served() {
        let cache = listening_cache();
        let generation = cache.generation().unwrap();
        // The change commits while the page is being computed.
        cache.notify("doctors");
        cache.put(
            key(),
            generation,
            at(0),
            at(10),
            Bytes::from_static(b"page"),
        );
        assert_eq!(cache.get(&key(), at(1)), None);
    }

    #[test]
    fn reconnect_drops_pages() {
        let cache = listening_cache();
        store(&cache, at(0), at(10));
        cache.lost();
        assert_eq!(cache.generation(), None);
        assert_eq!(cache.get(&key(), at(1)), None);
        cache.listening();
        assert_eq!(cache.get(&key(), at(1)), None);
    }
}
