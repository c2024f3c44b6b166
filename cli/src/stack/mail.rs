//! SMTP catcher: maildev 3.0.0 from npm. It accepts every message on its SMTP port, relays
//! nothing, stores messages in the folder `data` of the component folder and lists them
//! over a REST API on its web port, under `/api` in this version (`GET /api/email`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::process::{find_program, Launch};
use super::{Probe, StackLayout, StackSettings, LOOPBACK};

pub const NAME: &str = "mail";
pub const PROGRAM: &str = "maildev";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Explicit configuration file. maildev otherwise searches the working directory and
/// every parent for `.maildevrc.json` or `maildev.config.*`, and one found there could
/// enable relaying to a real mail server.
const CONFIG_FILE: &str = "maildev.json";

pub fn address(settings: &StackSettings) -> String {
    format!(
        "smtp://{LOOPBACK}:{} web http://{LOOPBACK}:{}",
        settings.smtp_port, settings.maildev_web_port
    )
}

pub fn prepare(layout: &StackLayout, settings: &StackSettings) -> anyhow::Result<Launch> {
    let dir = layout.component_dir(NAME);
    let mail_dir = dir.join("data");
    std::fs::create_dir_all(&mail_dir)
        .with_context(|| format!("failed to create {}", mail_dir.display()))?;
    let config_file = dir.join(CONFIG_FILE);
    std::fs::write(&config_file, "{}\n")
        .with_context(|| format!("failed to write {}", config_file.display()))?;

    let npm_bin_dirs = layout.npm_bin_dirs();
    let program = find_program(PROGRAM, &npm_bin_dirs).ok_or_else(|| {
        let searched: Vec<String> = npm_bin_dirs
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        anyhow!(
            "{PROGRAM} not found in {} or on PATH; run scripts/install-deps.sh",
            searched.join(", ")
        )
    })?;

    let loopback = LOOPBACK.to_string();
    Ok(Launch {
        program,
        args: vec![
            "--config".into(),
            config_file.into(),
            "--ip".into(),
            loopback.clone().into(),
            "--smtp".into(),
            settings.smtp_port.to_string().into(),
            "--web-ip".into(),
            loopback.into(),
            "--web".into(),
            settings.maildev_web_port.to_string().into(),
            "--mail-directory".into(),
            mail_dir.into(),
        ],
        env: Vec::new(),
        // maildev reads MAILDEV_* variables as settings, MAILDEV_OUTGOING_HOST among them.
        env_remove: std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| name.starts_with("MAILDEV_"))
            .collect(),
    })
}

pub fn probe(settings: &StackSettings) -> Probe {
    Probe::Http {
        url: format!("http://{LOOPBACK}:{}/api/email", settings.maildev_web_port),
        require_success: true,
    }
}

/// Returns the paths `stack down --purge` deletes: the whole component folder, with the
/// stored messages, the configuration file and the log.
pub fn purge_paths(layout: &StackLayout) -> Vec<PathBuf> {
    vec![layout.component_dir(NAME)]
}
