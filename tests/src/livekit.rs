//! LiveKit's own Node.js server SDK (`livekit-server-sdk`), run through the scripts in
//! `tests/livekit`, so tests check MedFlow's video tokens and webhook verification against
//! code MedFlow did not write. `scripts/install-deps.sh` installs the SDK into
//! `.stack/tools/node_modules`. The API key and secret reach the scripts through the
//! environment and the token or body through stdin, never through the command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Verifies `token` with the SDK's `TokenVerifier` and returns the token's claims. Fails
/// when the SDK rejects the token, with the SDK's reason in the error.
pub fn verify_with_sdk(
    token: &str,
    api_key: &str,
    api_secret: &str,
) -> anyhow::Result<serde_json::Value> {
    let output = run_script("verify-token.mjs", token.as_bytes(), api_key, api_secret)?;
    serde_json::from_str(&output).context("verify-token.mjs printed invalid JSON")
}

/// Signs `body` with the SDK the way a LiveKit server signs a webhook, and returns the
/// Authorization header value. It is a token made with the SDK's `AccessToken`, valid for
/// 5 minutes, whose `sha256` claim is the base64 SHA-256 of `body`.
pub fn sign_webhook_with_sdk(
    body: &[u8],
    api_key: &str,
    api_secret: &str,
) -> anyhow::Result<String> {
    let output = run_script("sign-webhook.mjs", body, api_key, api_secret)?;
    Ok(output.trim().to_owned())
}

/// Runs `tests/livekit/<script>` with Node.js, writes `input` to its stdin and returns its
/// stdout. Fails with the script's stderr when it exits with a non-zero status.
fn run_script(
    script: &str,
    input: &[u8],
    api_key: &str,
    api_secret: &str,
) -> anyhow::Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("livekit")
        .join(script);
    let mut child = Command::new("node")
        .arg(&path)
        .env("NODE_PATH", node_path())
        .env("LIVEKIT_API_KEY", api_key)
        .env("LIVEKIT_API_SECRET", api_secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "failed to start node {}; is Node.js installed?",
                path.display()
            )
        })?;

    // The scripts read stdin to its end before writing anything, so writing it all first
    // cannot deadlock on a full stdout pipe.
    let mut stdin = child.stdin.take().context("stdin of node is not piped")?;
    stdin
        .write_all(input)
        .with_context(|| format!("failed to write the input of {script}"))?;
    drop(stdin);

    let output = child
        .wait_with_output()
        .with_context(|| format!("failed to wait for {script}"))?;
    if !output.status.success() {
        bail!(
            "{script} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{script} printed invalid UTF-8"))
}

/// Returns the `NODE_PATH` value that finds the SDK. It lists `tools/node_modules` of
/// `MEDFLOW_STACK_DIR` when that is set, then of the repository's `.stack`, where
/// `scripts/install-deps.sh` installs the SDK.
fn node_path() -> std::ffi::OsString {
    let repo_stack = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack");
    let mut folders: Vec<PathBuf> = std::env::var_os("MEDFLOW_STACK_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    folders.push(repo_stack);
    let modules = folders
        .into_iter()
        .map(|stack| stack.join("tools").join("node_modules"));
    std::env::join_paths(modules).expect("stack paths contain no path separator")
}
