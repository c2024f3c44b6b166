//! `medflow create-admin`: bootstraps an admin account without an existing admin.

use std::io::BufRead;

use medflow_command_api::routes::accounts::{register_account, validate};
use medflow_command_api::state::AppState;
use medflow_command_api::CommandApiSettings;
use medflow_domain::values::Role;
use medflow_infra::clock;
use medflow_infra::event_store::EventMetadata;
use medflow_infra::web::ApiError;
use secrecy::{ExposeSecret, SecretString};

/// Registers an admin with the same validation, hashing and sealing as the command API.
/// The password comes from `MEDFLOW_ADMIN_PASSWORD` or, if unset, the first line of
/// standard input, so it never appears in the process list or shell history.
pub async fn create_admin(email: &str, name: &str, if_missing: bool) -> anyhow::Result<()> {
    let password = match std::env::var("MEDFLOW_ADMIN_PASSWORD") {
        Ok(password) => SecretString::from(password),
        Err(_) => {
            eprintln!("reading the admin password from standard input (one line)");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    let settings = command_settings()?;
    let (state, _) = AppState::build(&settings, clock::system_clock()).await?;
    let registration = validate(Ok(Role::Admin), email, name, password.expose_secret())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let metadata = EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: format!("cli-{}", uuid::Uuid::new_v4()),
        session_id: None,
    };
    match register_account(&state, registration, None, metadata).await {
        Ok(committed) => {
            println!("created admin account {}", committed.aggregate_id);
            Ok(())
        }
        Err(ApiError::Conflict(_)) if if_missing => {
            println!("an account with this e-mail address already exists; nothing to do");
            Ok(())
        }
        Err(error) => Err(anyhow::anyhow!("{error}")),
    }
}

/// `medflow keys rotate`: re-wraps every data key under the first master key.
pub async fn rotate_keys() -> anyhow::Result<()> {
    let settings = command_settings()?;
    let (state, _) = AppState::build(&settings, clock::system_clock()).await?;
    let changed = state.keys.rewrap_all().await?;
    println!(
        "re-wrapped {changed} data keys; every live data key is now wrapped by master key '{}'",
        state.keys.current_master_key_id()
    );
    Ok(())
}

/// Data keys unwrapped per master key id by `medflow keys check`.
const CHECKED_PER_MASTER_KEY: i64 = 20;

/// `medflow keys check`: unwraps a sample of the stored data keys with the configured
/// master keys and reports on each master key id. Exits with 1 when any fails.
pub async fn check_master_keys() -> anyhow::Result<std::process::ExitCode> {
    let settings = command_settings()?;
    let (state, _) = AppState::build(&settings, clock::system_clock()).await?;
    let checks = state.keys.check_master_keys(CHECKED_PER_MASTER_KEY).await?;
    if checks.is_empty() {
        println!("no data keys stored yet; nothing to check");
    }
    for check in &checks {
        let id = &check.master_key_id;
        if !check.configured {
            println!(
                "master key '{id}': NOT in MEDFLOW_MASTER_KEYS, which cannot open its {} data keys",
                check.data_keys
            );
        } else if check.failed > 0 {
            println!(
                "master key '{id}': {} of {} sampled data keys failed to unwrap ({} in all); \
                 MEDFLOW_MASTER_KEYS has a different key under this id",
                check.failed, check.sampled, check.data_keys
            );
        } else {
            println!(
                "master key '{id}': ok, {} of {} data keys unwrapped",
                check.sampled, check.data_keys
            );
        }
    }
    if checks.iter().all(|check| check.is_ok()) {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the database's personal data was sealed under other master keys; every read \
             of it would fail. Use the MEDFLOW_MASTER_KEYS it was set up with, or start over \
             with an empty database"
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// `medflow keys destroy`: crypto-shreds one person's personal data.
pub async fn destroy_subject_keys(subject: uuid::Uuid) -> anyhow::Result<()> {
    let settings = command_settings()?;
    let (state, _) = AppState::build(&settings, clock::system_clock()).await?;
    let destroyed = state.keys.destroy_subject(subject).await?;
    let revoked = state
        .sessions
        .revoke_all(medflow_domain::values::AccountId(subject))
        .await?;
    println!("destroyed {destroyed} data keys of {subject} and revoked {revoked} sessions");
    Ok(())
}

/// Reads the command API's settings from the environment, explaining a failure in terms
/// of environment variables rather than the command API's flags.
fn command_settings() -> anyhow::Result<CommandApiSettings> {
    CommandApiSettings::try_parse_from_env().map_err(|error| {
        let rendered = error.to_string();
        let summary: Vec<&str> = rendered
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .map(|line| line.trim().trim_start_matches("error: "))
            .collect();
        anyhow::anyhow!(
            "invalid or missing settings ({}). This command reads the command API's environment \
             variables, MEDFLOW_MASTER_KEYS and MEDFLOW_INDEX_KEY among them; for the local stack \
             run: set -a; . .stack/secrets.env; set +a",
            summary.join(" ")
        )
    })
}
