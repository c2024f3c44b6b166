//! S3 store: s3s-fs 0.14.1 serving the folder `data` of the component folder, where each
//! subfolder is a bucket. Requests must be signed (SigV4) with the generated credentials.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::process::{find_program, Launch};
use super::secrets::{ensure_env_file, random_string, EnvEntry};
use super::{Probe, StackLayout, StackSettings, LOOPBACK};

pub const NAME: &str = "s3";
pub const PROGRAM: &str = "s3s-fs";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bucket for uploaded documents (license scans, attachments), created at startup.
pub const BUCKET: &str = "medflow-documents";

pub const ACCESS_KEY_VARIABLE: &str = "MEDFLOW_S3_ACCESS_KEY";
pub const SECRET_KEY_VARIABLE: &str = "MEDFLOW_S3_SECRET_KEY";

/// Upper-case letters and digits, the alphabet of AWS access key ids.
const ACCESS_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_KEY_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub fn address(settings: &StackSettings) -> String {
    format!("http://{LOOPBACK}:{}", settings.s3_port)
}

pub fn credentials_file(layout: &StackLayout) -> PathBuf {
    layout.component_dir(NAME).join("credentials.env")
}

fn data_dir(layout: &StackLayout) -> PathBuf {
    layout.component_dir(NAME).join("data")
}

/// Creates the data folder with the bucket folder (which is what CreateBucket does in
/// s3s-fs) and the credentials file, and returns the launch settings.
pub fn prepare(layout: &StackLayout, settings: &StackSettings) -> anyhow::Result<Launch> {
    let bucket_dir = data_dir(layout).join(BUCKET);
    std::fs::create_dir_all(&bucket_dir)
        .with_context(|| format!("failed to create {}", bucket_dir.display()))?;

    let credentials = ensure_env_file(
        &credentials_file(layout),
        &[
            EnvEntry {
                name: ACCESS_KEY_VARIABLE,
                generate: || random_string(ACCESS_KEY_ALPHABET, 20),
            },
            EnvEntry {
                name: SECRET_KEY_VARIABLE,
                generate: || random_string(SECRET_KEY_ALPHABET, 40),
            },
        ],
    )?;

    let program = find_program(PROGRAM, &[]).ok_or_else(|| {
        anyhow!("{PROGRAM} not found on PATH or in ~/.cargo/bin; run scripts/install-deps.sh")
    })?;
    // NOTE: s3s-fs 0.14.1 accepts the keys only as arguments, so local users can read
    // them in the process list. Without them it would accept unsigned requests.
    Ok(Launch {
        program,
        args: vec![
            "--host".into(),
            LOOPBACK.to_string().into(),
            "--port".into(),
            settings.s3_port.to_string().into(),
            "--access-key".into(),
            credentials[ACCESS_KEY_VARIABLE].clone().into(),
            "--secret-key".into(),
            credentials[SECRET_KEY_VARIABLE].clone().into(),
            data_dir(layout).into(),
        ],
        // s3s-fs logs only errors unless RUST_LOG enables more.
        env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
        env_remove: Vec::new(),
    })
}

/// Any HTTP response counts, because s3s-fs returns 403 AccessDenied to an unsigned request.
pub fn probe(settings: &StackSettings) -> Probe {
    Probe::Http {
        url: format!("{}/", address(settings)),
        require_success: false,
    }
}

/// Returns the paths `stack down --purge` deletes: stored objects and the log. The
/// credentials file is kept, so clients configured with it keep working after a purge.
pub fn purge_paths(layout: &StackLayout) -> Vec<PathBuf> {
    let dir = layout.component_dir(NAME);
    vec![dir.join("data"), dir.join(format!("{NAME}.log"))]
}
