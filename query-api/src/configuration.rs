use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use medflow_infra::config::{
    parse_seconds, AuditVerifySettings, BookingSettings, DatabaseSettings, KeySettings,
};
use medflow_infra::object_store::ObjectStoreSettings;

#[derive(Debug, Clone, Parser)]
#[command(name = "medflow-query-api", about = "MedFlow query API")]
pub struct QueryApiSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub keys: KeySettings,

    #[command(flatten)]
    pub object_store: ObjectStoreSettings,

    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_QUERY_API_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub http_addr: SocketAddr,

    /// Session idle timeout in seconds; must match the command API's.
    #[arg(long = "session-idle-timeout", env = "MEDFLOW_SESSION_IDLE_TIMEOUT_SECS", default_value = "1800", value_parser = parse_seconds)]
    pub session_idle_timeout: Duration,

    /// Absolute session lifetime in seconds; must match the command API's.
    #[arg(long = "session-absolute-lifetime", env = "MEDFLOW_SESSION_ABSOLUTE_LIFETIME_SECS", default_value = "43200", value_parser = parse_seconds)]
    pub session_absolute_lifetime: Duration,

    /// Maximum time a request may wait for a projection to catch up, in milliseconds.
    #[arg(
        long = "max-wait-ms",
        env = "MEDFLOW_QUERY_MAX_WAIT_MS",
        default_value_t = 10_000
    )]
    pub max_wait_ms: u64,

    #[command(flatten)]
    pub booking: BookingSettings,

    #[command(flatten)]
    pub audit: AuditVerifySettings,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn argument_definitions_are_consistent() {
        QueryApiSettings::command().debug_assert();
    }
}
