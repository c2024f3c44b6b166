//! Everything a request handler needs, built once at startup.

use std::sync::Arc;

use chrono::TimeDelta;

use medflow_domain::account::Account;
use medflow_domain::appointment::Appointment;
use medflow_domain::availability::BookingPolicy;
use medflow_domain::doctor::DoctorProfile;
use medflow_infra::audit::AuditLog;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::crypto::password::PasswordHasher;
use medflow_infra::db::lease::LeasePool;
use medflow_infra::event_store::CommandBus;
use medflow_infra::object_store::ObjectStore;
use medflow_infra::sessions::SessionStore;
use medflow_infra::video::{VideoTokenIssuer, WebhookVerifier};

use deadpool_postgres::Pool;
use medflow_infra::clock::SharedClock;
use medflow_infra::crypto::keys::MasterKeys;
use medflow_infra::db;
use medflow_infra::sessions::SessionPolicy;

use crate::profiles::ProfileCache;
use crate::rate_limit::LoginLimiter;
use crate::CommandApiSettings;

pub struct AppState {
    pub clock: SharedClock,
    /// Pool for tables outside the event store, such as notifications.
    pub pool: Pool,
    pub accounts: CommandBus<Account>,
    pub doctors: CommandBus<DoctorProfile>,
    pub appointments: CommandBus<Appointment>,
    /// Doctor profiles with their sequence, for checking bookings.
    pub profiles: ProfileCache,
    pub booking_policy: BookingPolicy,
    pub video_tokens: VideoTokenIssuer,
    pub webhooks: WebhookVerifier,
    pub video_window: VideoWindow,
    /// Store of license documents, which clients upload through presigned URLs.
    pub object_store: ObjectStore,
    pub keys: Arc<KeyRing>,
    pub index: BlindIndex,
    pub hasher: PasswordHasher,
    pub sessions: SessionStore,
    pub audit: AuditLog,
    pub login_limiter: LoginLimiter,
}

pub type SharedState = Arc<AppState>;

/// Appointments kept in memory as last committed, a few hundred bytes each (an estimate).
const REMEMBERED_APPOINTMENTS: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(16_384).unwrap();

/// Doctor profiles kept in memory, a few kilobytes each (an estimate).
const PROFILE_CACHE_SIZE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(4096).unwrap();

/// When the patient and the doctor may join an appointment's video room, relative to
/// its slot.
#[derive(Debug, Clone, Copy)]
pub struct VideoWindow {
    pub before_start: TimeDelta,
    pub after_end: TimeDelta,
}

impl AppState {
    /// Connects to PostgreSQL and loads keys; returns the state and the pool it uses.
    pub async fn build(
        settings: &CommandApiSettings,
        clock: SharedClock,
    ) -> anyhow::Result<(Self, Pool)> {
        let pool = db::pg_pool(&settings.database.url, settings.database.pool_size)?;
        let sqlx_pool = db::sqlx_pool(&settings.database.url, settings.database.pool_size).await?;
        let appends = LeasePool::like(&sqlx_pool, settings.database.pool_size);
        let masters = MasterKeys::parse(&settings.keys.master_keys).map_err(anyhow::Error::msg)?;
        let index =
            BlindIndex::from_base64(&settings.keys.index_key).map_err(anyhow::Error::msg)?;
        let policy = SessionPolicy {
            idle_timeout: settings.session_idle_timeout,
            absolute_lifetime: settings.session_absolute_lifetime,
        };
        let object_store = ObjectStore::new(&settings.object_store).map_err(|error| {
            anyhow::anyhow!("failed to create the object store client: {error}")
        })?;
        let state = Self {
            clock: clock.clone(),
            pool: pool.clone(),
            accounts: CommandBus::<Account>::new(sqlx_pool.clone(), ())
                .appending_on(appends.clone()),
            doctors: CommandBus::<DoctorProfile>::new(sqlx_pool.clone(), ())
                .appending_on(appends.clone()),
            appointments: CommandBus::<Appointment>::new(sqlx_pool.clone(), ())
                .appending_on(appends)
                .remembering(REMEMBERED_APPOINTMENTS),
            profiles: ProfileCache::new(PROFILE_CACHE_SIZE),
            booking_policy: settings.booking.policy()?,
            video_tokens: VideoTokenIssuer::new(&settings.livekit)?,
            webhooks: WebhookVerifier::new(&settings.livekit),
            video_window: VideoWindow {
                before_start: TimeDelta::minutes(i64::from(settings.video_join_before_minutes)),
                after_end: TimeDelta::minutes(i64::from(settings.video_join_after_minutes)),
            },
            object_store,
            keys: Arc::new(KeyRing::new(pool.clone(), masters)),
            index,
            hasher: PasswordHasher::new(
                settings.password_hash_concurrency,
                settings.password_scrypt_log_n,
            )
            .await?,
            sessions: SessionStore::new(pool.clone(), policy, clock)
                .with_cache(settings.session_cache_max_age),
            audit: AuditLog::new(pool.clone()),
            login_limiter: LoginLimiter::new(
                settings.login_attempts_per_account,
                settings.login_attempts_per_address,
            ),
        };
        Ok((state, pool))
    }
}
