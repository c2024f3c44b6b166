use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use medflow_infra::config::{parse_seconds, BookingSettings, DatabaseSettings, KeySettings};
use medflow_infra::object_store::ObjectStoreSettings;
use medflow_infra::video::LiveKitSettings;
use secrecy::SecretString;

#[derive(Debug, Clone, Parser)]
#[command(name = "medflow-command-api", about = "MedFlow command API")]
pub struct CommandApiSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub keys: KeySettings,

    #[command(flatten)]
    pub object_store: ObjectStoreSettings,

    #[command(flatten)]
    pub booking: BookingSettings,

    #[command(flatten)]
    pub livekit: LiveKitSettings,

    /// Minutes before the slot start from which the patient and the doctor get video
    /// tokens.
    #[arg(
        long = "video-join-before-minutes",
        env = "MEDFLOW_VIDEO_JOIN_BEFORE_MINUTES",
        default_value_t = 10
    )]
    pub video_join_before_minutes: u32,

    /// Minutes after the slot end until which video tokens are issued; tokens expire
    /// then.
    #[arg(
        long = "video-join-after-minutes",
        env = "MEDFLOW_VIDEO_JOIN_AFTER_MINUTES",
        default_value_t = 15
    )]
    pub video_join_after_minutes: u32,

    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_COMMAND_API_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,

    /// Seconds of inactivity after which a session expires.
    #[arg(long = "session-idle-timeout", env = "MEDFLOW_SESSION_IDLE_TIMEOUT_SECS", default_value = "1800", value_parser = parse_seconds)]
    pub session_idle_timeout: Duration,

    /// Seconds after login at which a session expires however active it is.
    #[arg(long = "session-absolute-lifetime", env = "MEDFLOW_SESSION_ABSOLUTE_LIFETIME_SECS", default_value = "43200", value_parser = parse_seconds)]
    pub session_absolute_lifetime: Duration,

    /// Seconds a live session may be kept in memory for commands, which look it up where
    /// they commit instead of before they run. Revocations reach every process through
    /// a database notification; this bounds what a lost one could leave in memory. 0
    /// looks every session up before the command runs.
    #[arg(long = "session-cache", env = "MEDFLOW_SESSION_CACHE_SECS", default_value = "30", value_parser = parse_seconds)]
    pub session_cache_max_age: Duration,

    /// Login attempts allowed per account per minute.
    #[arg(
        long = "login-attempts-per-account",
        env = "MEDFLOW_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
        default_value_t = 5
    )]
    pub login_attempts_per_account: u32,

    /// Login attempts allowed per client IP address per minute.
    #[arg(
        long = "login-attempts-per-address",
        env = "MEDFLOW_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE",
        default_value_t = 30
    )]
    pub login_attempts_per_address: u32,

    /// Password hashes computed at once; each scrypt evaluation allocates 128 MiB.
    #[arg(
        long = "password-hash-concurrency",
        env = "MEDFLOW_PASSWORD_HASH_CONCURRENCY",
        default_value_t = 2
    )]
    pub password_hash_concurrency: usize,

    /// scrypt cost of new password hashes, as log2 of N (10 to 20). Lower it only for
    /// demo or test data: each step down halves the work an attacker needs per guess.
    /// Existing hashes keep verifying with the cost they were made with.
    #[arg(
        long = "password-scrypt-log-n",
        env = "MEDFLOW_PASSWORD_SCRYPT_LOG_N",
        default_value_t = medflow_infra::crypto::password::LOG_N,
        value_parser = clap::value_parser!(u8).range(
            medflow_infra::crypto::password::MIN_LOG_N as i64..=medflow_infra::crypto::password::MAX_LOG_N as i64
        )
    )]
    pub password_scrypt_log_n: u8,
}

impl CommandApiSettings {
    /// Reads the settings from environment variables and defaults only, ignoring the
    /// process arguments, for the operator CLI that shares the command API's state.
    ///
    /// The CLI's commands (admin bootstrap, key rotation, erasure) never call the object
    /// store or LiveKit, so here their credentials may be missing. The store's then
    /// default to empty strings, which it would reject. The command state builds a token
    /// issuer that rejects empty credentials, so a missing LiveKit key pair is replaced
    /// by a placeholder key and a random secret of this process. No token signed with
    /// them is handed out, because these commands issue none.
    pub fn try_parse_from_env() -> Result<Self, clap::Error> {
        let command = Self::command()
            .mut_arg("access_key", |arg| arg.required(false).default_value(""))
            .mut_arg("secret_key", |arg| arg.required(false).default_value(""))
            .mut_arg("api_key", |arg| arg.required(false).default_value(""))
            .mut_arg("api_secret", |arg| arg.required(false).default_value(""));
        let matches = command.try_get_matches_from(["medflow-command-api"])?;
        let mut settings = Self::from_arg_matches(&matches)?;
        if settings.livekit.api_key.is_empty() {
            settings.livekit.api_key = "medflow-cli-unused".to_owned();
            settings.livekit.api_secret = SecretString::from(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_definitions_are_consistent() {
        // Catches clashing argument ids of flattened settings, which clap only reports
        // when the binary parses its arguments.
        CommandApiSettings::command().debug_assert();
    }
}
