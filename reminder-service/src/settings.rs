use std::net::SocketAddr;

use clap::Parser;
use medflow_infra::config::{DatabaseSettings, KafkaSettings, KeySettings};
use medflow_projectors::settings::StallSettings;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "medflow-reminder-service",
    about = "Schedules and sends appointment reminders"
)]
pub struct ReminderSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub keys: KeySettings,

    /// Address of the health and metrics endpoint.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_REMINDERS_HTTP_ADDR",
        default_value = "127.0.0.1:8084"
    )]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub stall: StallSettings,

    /// SMTP server for reminder e-mails, as `smtp://host:port` (plain SMTP).
    #[arg(
        long = "smtp-url",
        env = "MEDFLOW_SMTP_URL",
        default_value = "smtp://127.0.0.1:1025"
    )]
    pub smtp_url: String,

    /// Sender of reminder e-mails.
    #[arg(
        long = "mail-from",
        env = "MEDFLOW_MAIL_FROM",
        default_value = "MedFlow <reminders@medflow.example>"
    )]
    pub mail_from: String,

    /// Base URL of the patient frontend; e-mails link to `<base>/appointments/<id>`.
    #[arg(
        long = "frontend-base-url",
        env = "MEDFLOW_FRONTEND_BASE_URL",
        default_value = "http://localhost:3000"
    )]
    pub frontend_base_url: String,

    /// Concurrent senders in this instance. A send mostly waits for the SMTP server
    /// and the database, so senders outnumber cores. Each keeps a database connection
    /// for the whole send, so keep it below the pool size (`MEDFLOW_DATABASE_POOL_SIZE`).
    #[arg(
        long = "workers",
        env = "MEDFLOW_REMINDER_WORKERS",
        default_value_t = 8
    )]
    pub workers: usize,

    /// Milliseconds an idle sender waits before looking for due reminders again.
    #[arg(
        long = "poll-interval-ms",
        env = "MEDFLOW_REMINDER_POLL_INTERVAL_MS",
        default_value_t = 500
    )]
    pub poll_interval_ms: u64,

    /// Seconds added to the real time, for demos and tests of due times; 0 in
    /// production.
    #[arg(
        long = "clock-offset-secs",
        env = "MEDFLOW_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub clock_offset_secs: i64,

    /// How many times faster than real time the service's clock runs; 1 in production.
    #[arg(
        long = "clock-speed",
        env = "MEDFLOW_CLOCK_SPEED",
        default_value_t = 1.0
    )]
    pub clock_speed: f64,

    /// Fault injection for tests: abort the process right after SMTP accepted a
    /// reminder and before the database records it as sent. Never set in production.
    #[arg(
        long = "abort-after-smtp",
        env = "MEDFLOW_REMINDER_ABORT_AFTER_SMTP",
        default_value_t = false,
        hide = true
    )]
    pub abort_after_smtp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn argument_definitions_are_consistent() {
        ReminderSettings::command().debug_assert();
    }
}
