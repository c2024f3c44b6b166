//! Database-backed sessions. Every request looks its session up, so revoking a session
//! (logout, logout everywhere, suspension) takes effect on the very next request. Most
//! requests look it up in PostgreSQL before they act. Commands may act on a session
//! kept in memory ([`SessionCache`]) because the statement that commits their events
//! looks the session up, and a command that commits nothing looks it up before its
//! response is sent (`crate::web::auth`).

pub mod cache;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use medflow_domain::values::{AccountId, Role};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::crypto::token;
pub use cache::SessionCache;

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused for this long expires.
    pub idle_timeout: Duration,
    /// A session expires this long after login, however active it is.
    pub absolute_lifetime: Duration,
}

impl SessionPolicy {
    /// How stale `last_seen_at` may get before a request writes it again: a thirtieth
    /// of the idle timeout, at most a minute. A session therefore idles out between
    /// this much before the idle timeout (counted from its last request) and the
    /// timeout itself, never later.
    pub fn touch_interval(&self) -> Duration {
        (self.idle_timeout / 30).min(Duration::from_secs(60))
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// A freshly created session. The token is returned to the client once and not stored.
pub struct NewSession {
    pub session_id: Uuid,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// The session a request authenticated with.
#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: Uuid,
    pub account_id: AccountId,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store query failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("session store connection failed")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// SQL condition of a live session: not revoked, not expired at `$2` (now) and used
/// after `$3` (the idle cutoff).
const LIVE: &str = "revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3";

#[derive(Clone)]
pub struct SessionStore {
    pool: Pool,
    policy: SessionPolicy,
    clock: SharedClock,
    cache: Option<Arc<SessionCache>>,
}

impl SessionStore {
    pub fn new(pool: Pool, policy: SessionPolicy, clock: SharedClock) -> Self {
        Self {
            pool,
            policy,
            clock,
            cache: None,
        }
    }

    /// Keeps live sessions in memory for up to `max_age` each (see [`cache`]); zero
    /// keeps none. The cache keeps nothing until it is subscribed to the process's
    /// database listener: see [`SessionStore::cache`].
    pub fn with_cache(mut self, max_age: Duration) -> Self {
        self.cache = (!max_age.is_zero()).then(|| Arc::new(SessionCache::new(max_age)));
        self
    }

    /// Returns the cache, for subscribing it to the database listener.
    pub fn cache(&self) -> Option<Arc<SessionCache>> {
        self.cache.clone()
    }

    pub async fn create(
        &self,
        account_id: AccountId,
        role: Role,
    ) -> Result<NewSession, SessionError> {
        let now = self.clock.now();
        let session_id = Uuid::new_v4();
        let token = token::generate();
        let expires_at = now + self.policy.absolute_lifetime;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO sessions (session_id, token_hash, account_id, role, created_at, last_seen_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $5, $6)",
                &[&session_id, &token::hash(&token), &account_id.0, &role.as_str(), &now, &expires_at],
            )
            .await?;
        Ok(NewSession {
            session_id,
            token,
            expires_at,
        })
    }

    /// Returns the session for `token` as this process keeps it in memory, if it may
    /// still be used now (see [`cache`]). A caller acting on it without looking the
    /// session up must have the session checked where it commits: see
    /// `crate::web::auth::AuthenticatedCommand`.
    pub fn remembered(&self, token: &str) -> Option<Session> {
        let cache = self.cache.as_ref()?;
        cache.get(
            &token::hash(token),
            self.clock.now(),
            self.policy.touch_interval(),
        )
    }

    /// Finds the live session for `token` in PostgreSQL and marks it used now. Returns
    /// `None` for an unknown, revoked, idle-expired or absolutely expired token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Session>, SessionError> {
        let now = self.clock.now();
        let token_hash = token::hash(token);
        let touch_interval = self.policy.touch_interval();
        let ticket = self.cache.as_ref().and_then(|cache| cache.ticket());
        let idle_cutoff = now - self.policy.idle_timeout;
        let touch_cutoff = now - touch_interval;
        let client = self.pool.get().await?;
        // Most requests only read: last_seen_at is written when it is older than the
        // touch interval, so a busy session costs no commit to disk per request. Every
        // request runs this, so it is prepared once per connection.
        let statement = client
            .prepare_cached(&format!(
                "WITH live AS (
                     SELECT session_id, account_id, role, expires_at, last_seen_at
                     FROM sessions WHERE token_hash = $1 AND {LIVE}
                 ), touched AS (
                     UPDATE sessions SET last_seen_at = $2
                     FROM live
                     WHERE sessions.session_id = live.session_id
                       AND live.last_seen_at < $4
                 )
                 SELECT session_id, account_id, role, expires_at, last_seen_at FROM live"
            ))
            .await?;
        let row = client
            .query_opt(
                &statement,
                &[&token_hash, &now, &idle_cutoff, &touch_cutoff],
            )
            .await?;
        let Some(row) = row else {
            if let Some(cache) = &self.cache {
                cache.forget_token(&token_hash);
            }
            return Ok(None);
        };
        let role: String = row.get(2);
        let Ok(role) = Role::parse("role", &role) else {
            tracing::error!(session_id = %row.get::<_, Uuid>(0), "session row has an unknown role");
            return Ok(None);
        };
        let session = Session {
            session_id: row.get(0),
            account_id: AccountId(row.get(1)),
            role,
            expires_at: row.get(3),
        };
        if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
            let last_seen: DateTime<Utc> = row.get(4);
            let seen_at = if last_seen < touch_cutoff {
                now
            } else {
                last_seen
            };
            cache.keep(ticket, token_hash, session.clone(), seen_at);
        }
        Ok(Some(session))
    }

    /// Returns whether the session is still live (not revoked, not expired, not idle
    /// past the timeout), without marking it used. Long-lived responses such as event
    /// streams call it to end when their session ends.
    pub async fn is_live(&self, session_id: Uuid) -> Result<bool, SessionError> {
        let now = self.clock.now();
        let idle_cutoff = now - self.policy.idle_timeout;
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT 1 FROM sessions WHERE session_id = $1 AND {LIVE}"
            ))
            .await?;
        let row = client
            .query_opt(&statement, &[&session_id, &now, &idle_cutoff])
            .await?;
        Ok(row.is_some())
    }

    /// Revokes one session; returns whether it was live.
    pub async fn revoke(&self, session_id: Uuid) -> Result<bool, SessionError> {
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL",
                &[&session_id, &self.clock.now()],
            )
            .await?;
        if let Some(cache) = &self.cache {
            cache.forget_session(session_id);
        }
        Ok(changed == 1)
    }

    /// Revokes every live session of an account; returns how many there were.
    pub async fn revoke_all(&self, account_id: AccountId) -> Result<u64, SessionError> {
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL",
                &[&account_id.0, &self.clock.now()],
            )
            .await?;
        if let Some(cache) = &self.cache {
            cache.forget_account(account_id);
        }
        Ok(changed)
    }
}
