use std::net::SocketAddr;

use clap::{Parser, Subcommand};
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
