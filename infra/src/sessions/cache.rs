//! Live sessions kept in memory between lookups, so that most requests authenticate
//! without a round trip to PostgreSQL.
//!
//! A cached session is dropped when the database announces that it ended. The
//! `sessions` table's trigger sends its id on the `session_revocations` channel when it
//! is revoked or deleted, or when its expiry or last use moves back (schema migration
//! 0016). The process's database listener passes the id here. While the listener is
//! disconnected an announcement could be missed, so nothing is kept or served until it
//! listens again. What nothing announces is bounded by time: an entry is served only
//! while its recorded last use is younger than the session's touch interval, so the
//! lookup that writes `last_seen_at` still runs, and for at most the configured
//! maximum age.
//!
//! A lookup that was running while a revocation was announced must not keep the
//! session it read. Each lookup takes a ticket first; a session is kept only if no
//! revocation of it was announced after its ticket.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;
use medflow_domain::values::AccountId;
use uuid::Uuid;

use super::Session;
use crate::listener::Subscriber;

/// Channel on which the database announces sessions that ended.
pub const CHANNEL: &str = "session_revocations";

/// Maximum number of cached sessions. The least recently used one makes room.
const CAPACITY: usize = 100_000;

/// Announced revocations remembered for lookups still running. A lookup whose ticket
/// is older than all of them keeps nothing.
const RECENT_REVOCATIONS: usize = 4_096;

/// Generation at which a lookup started (see [`SessionCache::ticket`]).
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

struct Entry {
    session: Session,
    /// Last use of the session as stored in the database.
    seen_at: DateTime<Utc>,
    kept_at: Instant,
}

struct State {
    listening: bool,
    /// Incremented by every announced revocation and every change of the listener's
    /// connection.
    generation: u64,
    /// Cached sessions by token hash.
    entries: LruCache<Vec<u8>, Entry>,
    /// Session id to token hash, for revocations, which name sessions.
    tokens: HashMap<Uuid, Vec<u8>>,
    /// Generation after each recent revocation, and the session it named.
    revocations: VecDeque<(u64, Uuid)>,
    /// Oldest ticket generation that [`State::revocations`] can still vouch for.
    oldest_ticket: u64,
}

pub struct SessionCache {
    max_age: Duration,
    state: Mutex<State>,
}

impl SessionCache {
    /// Keeps sessions for at most `max_age` each. Nothing is kept before the listener
    /// reports that it listens.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            state: Mutex::new(State {
                listening: false,
                generation: 0,
                entries: LruCache::new(NonZeroUsize::new(CAPACITY).expect("non-zero capacity")),
                tokens: HashMap::new(),
                revocations: VecDeque::new(),
                oldest_ticket: 0,
            }),
        }
    }

    /// Returns the cached session for `token_hash` if it may be used at `now` without a
    /// lookup: its recorded last use is less than `touch_interval` ago and it has not
    /// expired.
    pub fn get(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
        touch_interval: Duration,
    ) -> Option<Session> {
        let mut state = self.lock();
        if !state.listening {
            return None;
        }
        let kept = state.entries.get(token_hash)?;
        let touch_interval = chrono::TimeDelta::from_std(touch_interval).ok()?;
        let usable = kept.kept_at.elapsed() < self.max_age
            && now < kept.session.expires_at
            && kept.seen_at <= now
            && now - kept.seen_at < touch_interval;
        if usable {
            return Some(kept.session.clone());
        }
        let session_id = kept.session.session_id;
        state.entries.pop(token_hash);
        state.tokens.remove(&session_id);
        None
    }

    /// Takes the ticket for a lookup about to query the database, or `None` while the
    /// listener is not connected.
    pub fn ticket(&self) -> Option<Ticket> {
        let state = self.lock();
        state.listening.then_some(Ticket {
            generation: state.generation,
        })
    }

    /// Caches `session`, read by the lookup that took `ticket`, unless a revocation of it
    /// was announced since or the listener lost its connection meanwhile. `seen_at` is
    /// the session's last use as stored in the database after the lookup.
    pub fn keep(
        &self,
        ticket: Ticket,
        token_hash: Vec<u8>,
        session: Session,
        seen_at: DateTime<Utc>,
    ) {
        let mut state = self.lock();
        if !state.listening || !state.ticket_covers(ticket, session.session_id) {
            return;
        }
        let session_id = session.session_id;
        let kept = Entry {
            session,
            seen_at,
            kept_at: Instant::now(),
        };
        if let Some((evicted_hash, evicted)) = state.entries.push(token_hash.clone(), kept) {
            if evicted_hash != token_hash {
                state.tokens.remove(&evicted.session.session_id);
            }
        }
        state.tokens.insert(session_id, token_hash);
    }

    /// Forgets a session this process has just revoked, before the announcement of it
    /// comes back.
    pub fn forget_session(&self, session_id: Uuid) {
        self.lock().revoke(session_id);
    }

    /// Forgets the session kept for `token_hash`, which a lookup found no longer live.
    pub fn forget_token(&self, token_hash: &[u8]) {
        let mut state = self.lock();
        if let Some(kept) = state.entries.pop(token_hash) {
            state.tokens.remove(&kept.session.session_id);
        }
    }

    /// Forgets every kept session of an account whose sessions this process has just
    /// revoked.
    pub fn forget_account(&self, account_id: AccountId) {
        let mut state = self.lock();
        let sessions: Vec<Uuid> = state
            .entries
            .iter()
            .filter(|(_, kept)| kept.session.account_id == account_id)
            .map(|(_, kept)| kept.session.session_id)
            .collect();
        for session_id in sessions {
            state.revoke(session_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change leaves the maps consistent, so a lock poisoned by a panicking
        // holder is used as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn revoke(&mut self, session_id: Uuid) {
        self.generation += 1;
        if let Some(token_hash) = self.tokens.remove(&session_id) {
            self.entries.pop(&token_hash);
        }
        if self.revocations.len() == RECENT_REVOCATIONS {
            if let Some((generation, _)) = self.revocations.pop_front() {
                self.oldest_ticket = generation;
            }
        }
        self.revocations.push_back((self.generation, session_id));
    }

    /// Returns true if every revocation announced after `ticket` is remembered and none
    /// of them names `session_id`.
    fn ticket_covers(&self, ticket: Ticket, session_id: Uuid) -> bool {
        ticket.generation >= self.oldest_ticket
            && !self.revocations.iter().any(|(generation, revoked)| {
                *generation > ticket.generation && *revoked == session_id
            })
    }

    fn forget_everything(&mut self) {
        self.generation += 1;
        self.oldest_ticket = self.generation;
        self.entries.clear();
        self.tokens.clear();
        self.revocations.clear();
    }
}

impl Subscriber for SessionCache {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn notify(&self, payload: &str) {
        let mut state = self.lock();
        match Uuid::parse_str(payload) {
            Ok(session_id) => state.revoke(session_id),
            // Not written by the trigger; the safe reading is that anything may have ended.
            Err(_) => state.forget_everything(),
        }
    }

    fn listening(&self) {
        let mut state = self.lock();
        // Revocations committed while no connection listened were not announced, and
        // lookups that started before now may have read them as live.
        state.forget_everything();
        state.listening = true;
    }

    fn lost(&self) {
        let mut state = self.lock();
        state.forget_everything();
        state.listening = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use medflow_domain::values::Role;

    const TOUCH: Duration = Duration::from_secs(60);

    fn session(account: AccountId, now: DateTime<Utc>) -> Session {
        Session {
            session_id: Uuid::new_v4(),
            account_id: account,
            role: Role::Patient,
            expires_at: now + TimeDelta::hours(12),
        }
    }

    fn listening_cache() -> SessionCache {
        let cache = SessionCache::new(Duration::from_secs(30));
        cache.listening();
        cache
    }

    /// Keeps `session` under `token` through a ticket taken just before.
    fn keep(cache: &SessionCache, token: &[u8], session: &Session, now: DateTime<Utc>) {
        let ticket = cache.ticket().expect("listening");
        cache.keep(ticket, token.to_vec(), session.clone(), now);
    }

    #[test]
    fn nothing_cached_before_listening() {
        let cache = SessionCache::new(Duration::from_secs(30));
        assert!(cache.ticket().is_none());
        cache.listening();
        let now = Utc::now();
        let kept = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"token", &kept, now);
        assert_eq!(
            cache.get(b"token", now, TOUCH).map(|s| s.session_id),
            Some(kept.session_id)
        );
    }

    #[test]
    fn served_within_touch_interval_before_expiry() {
        let cache = listening_cache();
        let now = Utc::now();
        let kept = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"token", &kept, now);
        let almost = now + TimeDelta::seconds(59);
        assert!(cache.get(b"token", almost, TOUCH).is_some());
        // Once the database's last use is a touch interval old, the lookup that writes
        // it must run again.
        assert!(cache
            .get(b"token", now + TimeDelta::seconds(60), TOUCH)
            .is_none());
        assert!(
            cache.get(b"token", almost, TOUCH).is_none(),
            "dropped when stale"
        );

        let mut ending = session(AccountId(Uuid::new_v4()), now);
        ending.expires_at = now + TimeDelta::seconds(10);
        keep(&cache, b"ending", &ending, now);
        assert!(cache
            .get(b"ending", now + TimeDelta::seconds(9), TOUCH)
            .is_some());
        assert!(cache
            .get(b"ending", now + TimeDelta::seconds(10), TOUCH)
            .is_none());
    }

    #[test]
    fn served_up_to_maximum_age() {
        let cache = SessionCache::new(Duration::from_millis(20));
        cache.listening();
        let now = Utc::now();
        let kept = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"token", &kept, now);
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(b"token", now, TOUCH).is_none());
    }

    #[test]
    fn announced_revocation_drops_session() {
        let cache = listening_cache();
        let now = Utc::now();
        let account = AccountId(Uuid::new_v4());
        let revoked = session(account, now);
        let other = session(account, now);
        keep(&cache, b"revoked", &revoked, now);
        keep(&cache, b"other", &other, now);
        cache.notify(&revoked.session_id.to_string());
        assert!(cache.get(b"revoked", now, TOUCH).is_none());
        assert!(cache.get(b"other", now, TOUCH).is_some());
    }

    #[test]
    fn overtaken_lookup_caches_nothing() {
        let cache = listening_cache();
        let now = Utc::now();
        let read = session(AccountId(Uuid::new_v4()), now);
        let unrelated = session(AccountId(Uuid::new_v4()), now);
        let ticket = cache.ticket().unwrap();
        // The lookup read the session as live; its revocation is announced before the
        // lookup hands the session over.
        cache.notify(&read.session_id.to_string());
        cache.notify(&unrelated.session_id.to_string());
        cache.keep(ticket, b"read".to_vec(), read.clone(), now);
        assert!(cache.get(b"read", now, TOUCH).is_none());

        // A revocation of another session does not stop a lookup from keeping its own.
        let ticket = cache.ticket().unwrap();
        let live = session(AccountId(Uuid::new_v4()), now);
        cache.notify(&unrelated.session_id.to_string());
        cache.keep(ticket, b"live".to_vec(), live, now);
        assert!(cache.get(b"live", now, TOUCH).is_some());
    }

    #[test]
    fn lookup_older_than_revocations_caches_nothing() {
        let cache = listening_cache();
        let now = Utc::now();
        let ticket = cache.ticket().unwrap();
        for _ in 0..=RECENT_REVOCATIONS {
            cache.notify(&Uuid::new_v4().to_string());
        }
        let read = session(AccountId(Uuid::new_v4()), now);
        cache.keep(ticket, b"read".to_vec(), read, now);
        assert!(cache.get(b"read", now, TOUCH).is_none());
    }

    #[test]
    fn lost_listener_drops_everything() {
        let cache = listening_cache();
        let now = Utc::now();
        let kept = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"token", &kept, now);
        let ticket = cache.ticket().unwrap();
        cache.lost();
        assert!(cache.get(b"token", now, TOUCH).is_none());
        assert!(cache.ticket().is_none());
        cache.keep(ticket, b"token".to_vec(), kept.clone(), now);
        // Listening again does not revive what was read while nothing listened.
        cache.listening();
        cache.keep(ticket, b"token".to_vec(), kept, now);
        assert!(cache.get(b"token", now, TOUCH).is_none());
    }

    #[test]
    fn foreign_payload_drops_everything() {
        let cache = listening_cache();
        let now = Utc::now();
        let kept = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"token", &kept, now);
        cache.notify("all");
        assert!(cache.get(b"token", now, TOUCH).is_none());
    }

    #[test]
    fn forget_account_keeps_other_accounts() {
        let cache = listening_cache();
        let now = Utc::now();
        let account = AccountId(Uuid::new_v4());
        let phone = session(account, now);
        let laptop = session(account, now);
        let stranger = session(AccountId(Uuid::new_v4()), now);
        keep(&cache, b"phone", &phone, now);
        keep(&cache, b"laptop", &laptop, now);
        keep(&cache, b"stranger", &stranger, now);
        cache.forget_account(account);
        assert!(cache.get(b"phone", now, TOUCH).is_none());
        assert!(cache.get(b"laptop", now, TOUCH).is_none());
        assert!(cache.get(b"stranger", now, TOUCH).is_some());
    }
}
