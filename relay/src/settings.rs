use std::net::SocketAddr;

use clap::Parser;
use medflow_infra::config::{AuditSealSettings, DatabaseSettings, KafkaSettings};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "medflow-relay",
    about = "Publishes committed events from PostgreSQL to Kafka"
)]
pub struct RelaySettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    /// Address of the health and metrics endpoint.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_RELAY_HTTP_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub http_addr: SocketAddr,

    /// Name of this relay's checkpoint; relays with different names publish independently.
    #[arg(
        long = "relay-name",
        env = "MEDFLOW_RELAY_NAME",
        default_value = "main"
    )]
    pub name: String,

    /// Maximum events read and published per batch.
    #[arg(
        long = "relay-batch-size",
        env = "MEDFLOW_RELAY_BATCH_SIZE",
        default_value_t = 500
    )]
    pub batch_size: i64,

    /// Pause in milliseconds between polls when no new event is visible.
    #[arg(
        long = "relay-poll-interval-ms",
        env = "MEDFLOW_RELAY_POLL_INTERVAL_MS",
        default_value_t = 20
    )]
    pub poll_interval_ms: u64,

    #[command(flatten)]
    pub audit: AuditSealSettings,
}
