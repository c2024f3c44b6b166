use std::sync::Arc;

use deadpool_postgres::Pool;
use medflow_domain::availability::BookingPolicy;
use medflow_infra::audit::signing::TrustedKeys;
use medflow_infra::audit::AuditLog;
use medflow_infra::clock::SharedClock;
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::object_store::ObjectStore;

use crate::directory_cache::DirectoryCache;
use crate::doctor_cache::DoctorCache;
use crate::notifications::NotificationHub;

pub struct AppState {
    pub pool: Pool,
    pub keys: Arc<KeyRing>,
    pub max_wait_ms: u64,
    pub clock: SharedClock,
    pub booking_policy: BookingPolicy,
    pub object_store: ObjectStore,
    pub audit: AuditLog,
    /// Public keys that verify audit checkpoints; empty when none is configured.
    pub audit_keys: TrustedKeys,
    pub doctor_cache: DoctorCache,
    pub directory_cache: Arc<DirectoryCache>,
    pub notifications: NotificationHub,
}

pub type SharedState = Arc<AppState>;
