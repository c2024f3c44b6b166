//! Validation of FHIR AuditEvent exports by the Python `fhir.resources` models (an
//! independent implementation of the FHIR R4 resource definitions), through
//! `tests/fhir/validate_audit_events.py`. `scripts/install-deps.sh` installs them into
//! `.stack/tools/python`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// What the validator accepted.
#[derive(Debug, serde::Deserialize)]
pub struct Validated {
    pub count: usize,
    pub ids: Vec<String>,
    pub actions: Vec<String>,
    pub outcomes: Vec<String>,
}

/// Validates `export`, in `mode` `ndjson` or `bundle`. Fails with the validator's
/// reasons when any resource is invalid.
pub fn validate(export: &[u8], mode: &str) -> anyhow::Result<Validated> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../.stack/tools/python/bin/python");
    let script = root.join("fhir/validate_audit_events.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "failed to start {}; run scripts/install-deps.sh",
                python.display()
            )
        })?;
    // The script reads all of stdin before it writes, so this cannot deadlock.
    let mut stdin = child.stdin.take().context("stdin is not piped")?;
    stdin.write_all(export)?;
    drop(stdin);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "the FHIR validator rejected the export: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).context("the validator printed invalid JSON")
}
