//! Settings shared by several services, read from environment variables (or the
//! matching command-line flags) with documented defaults.

use std::time::Duration;

use chrono::TimeDelta;
use clap::Args;
use medflow_domain::availability::BookingPolicy;
use secrecy::SecretString;

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL of the application role. It may contain a password, so it is
    /// kept secret and never logged.
    #[arg(
        long = "database-url",
        env = "MEDFLOW_DATABASE_URL",
        default_value = "postgres://medflow_app@127.0.0.1:5432/medflow",
        hide_default_value = false,
        hide_env_values = true
    )]
    pub url: SecretString,

    /// Maximum number of pooled connections.
    #[arg(
        long = "database-pool-size",
        env = "MEDFLOW_DATABASE_POOL_SIZE",
        default_value_t = 10
    )]
    pub pool_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct KafkaSettings {
    /// Comma-separated bootstrap servers.
    #[arg(
        long = "kafka-brokers",
        env = "MEDFLOW_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Prefix of every topic and consumer group name, so several deployments (or test
    /// runs) can share one broker.
    #[arg(
        long = "kafka-topic-prefix",
        env = "MEDFLOW_KAFKA_TOPIC_PREFIX",
        default_value = "medflow."
    )]
    pub topic_prefix: String,

    /// Consumer group session timeout in milliseconds. Brokers take a good part of it to
    /// finish a group join, so short values make consumers start sooner.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "MEDFLOW_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 6000
    )]
    pub session_timeout_ms: u32,
}

#[derive(Debug, Clone, Args)]
pub struct KeySettings {
    /// Master keys as `id:base64key` pairs separated by commas; each key is 32 bytes.
    /// The first wraps new data keys, the others only unwrap old ones (rotation).
    #[arg(
        long = "master-keys",
        env = "MEDFLOW_MASTER_KEYS",
        hide_env_values = true
    )]
    pub master_keys: SecretString,

    /// Base64 of the 32-byte HMAC key for the e-mail index. Changing it orphans every
    /// existing account's login, so it is not rotated with the master keys.
    #[arg(long = "index-key", env = "MEDFLOW_INDEX_KEY", hide_env_values = true)]
    pub index_key: SecretString,
}

/// Public keys that verify the audit trail's checkpoints (see `audit::signing`).
#[derive(Debug, Clone, Default, Args)]
pub struct AuditVerifySettings {
    /// Base64 Ed25519 public keys, separated by commas, whose checkpoint signatures
    /// verify accepts. Print the key of a signing key with `medflow audit public-key`.
    #[arg(
        long = "audit-public-keys",
        env = "MEDFLOW_AUDIT_PUBLIC_KEYS",
        default_value = ""
    )]
    pub public_keys: String,
}

impl AuditVerifySettings {
    pub fn trusted_keys(&self) -> Result<crate::audit::signing::TrustedKeys, String> {
        crate::audit::signing::TrustedKeys::parse(&self.public_keys)
    }
}

/// The sealer's private key (see `audit::checkpoint`).
#[derive(Debug, Clone, Args)]
pub struct AuditSealSettings {
    /// Base64 of the 32-byte Ed25519 seed that signs audit checkpoints. Keep it outside
    /// the database; without it no checkpoint is sealed.
    #[arg(
        long = "audit-signing-key",
        env = "MEDFLOW_AUDIT_SIGNING_KEY",
        hide_env_values = true
    )]
    pub signing_key: Option<SecretString>,

    /// Seconds between sealer ticks; a range is sealed one or two ticks after it is
    /// written.
    #[arg(long = "audit-seal-interval", env = "MEDFLOW_AUDIT_SEAL_INTERVAL_SECS", default_value = "5", value_parser = parse_seconds)]
    pub seal_interval: std::time::Duration,
}

/// When patients may book. The command API checks bookings and the query API lists
/// slots with these values, so both services must be given the same ones.
#[derive(Debug, Clone, Args)]
pub struct BookingSettings {
    /// Minutes between now and the earliest bookable slot start.
    #[arg(
        long = "booking-minimum-notice-minutes",
        env = "MEDFLOW_BOOKING_MINIMUM_NOTICE_MINUTES",
        default_value_t = 60
    )]
    pub minimum_notice_minutes: u32,

    /// Days ahead up to which slots can be booked.
    #[arg(
        long = "booking-horizon-days",
        env = "MEDFLOW_BOOKING_HORIZON_DAYS",
        default_value_t = 60
    )]
    pub horizon_days: u32,
}

impl Default for BookingSettings {
    fn default() -> Self {
        Self {
            minimum_notice_minutes: 60,
            horizon_days: 60,
        }
    }
}

impl BookingSettings {
    /// Builds the booking policy, or explains which setting is out of range.
    pub fn policy(&self) -> anyhow::Result<BookingPolicy> {
        BookingPolicy::new(
            TimeDelta::minutes(i64::from(self.minimum_notice_minutes)),
            TimeDelta::days(i64::from(self.horizon_days)),
        )
        .map_err(|error| anyhow::anyhow!("invalid booking settings: {error}"))
    }
}

/// Parses a duration given in whole seconds, for clap.
pub fn parse_seconds(raw: &str) -> Result<Duration, String> {
    raw.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("'{raw}' is not a whole number of seconds"))
}
