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
