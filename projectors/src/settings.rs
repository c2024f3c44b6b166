use std::net::SocketAddr;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use medflow_infra::config::{DatabaseSettings, KafkaSettings};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "medflow-projectors",
    about = "Maintains MedFlow's read models from Kafka"
)]
pub struct ProjectorSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    /// Address of the health and metrics endpoint.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_PROJECTORS_HTTP_ADDR",
        default_value = "127.0.0.1:8083"
    )]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub stall: StallSettings,

    #[command(subcommand)]
    pub command: Option<ProjectorCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectorCommand {
    /// Consumes events and keeps every projection up to date (the default).
    Run,
    /// Drops a projection's read model and replays it from the event store, in one
    /// transaction; running projectors wait and then continue from the rebuilt state.
    Rebuild {
        /// Projection name, such as `accounts`.
        projection: String,
    },
}

/// When a consumer that is behind and commits nothing counts as stuck.
#[derive(Debug, Clone, Args)]
pub struct StallSettings {
    /// Seconds a consumer may stay behind its topics without committing progress before
    /// `/health/ready` fails for it.
    #[arg(
        long = "stall-limit-secs",
        env = "MEDFLOW_CONSUMER_STALL_LIMIT_SECS",
        default_value_t = 120
    )]
    pub limit_secs: u64,
}

impl StallSettings {
    pub fn limit(&self) -> Duration {
        Duration::from_secs(self.limit_secs)
    }
}
