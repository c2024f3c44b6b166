use std::sync::Arc;

use deadpool_postgres::Pool;
use medflow_infra::crypto::keys::KeyRing;

pub struct AppState {
    pub pool: Pool,
    pub keys: KeyRing,
    pub max_wait_ms: u64,
}

pub type SharedState = Arc<AppState>;
