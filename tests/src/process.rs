//! Service binaries run as child processes, so a test can SIGKILL them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Path of a workspace binary. The test command builds all binaries first.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Self { child }
    }

    /// Kills the process with SIGKILL: no shutdown hook runs, nothing is flushed.
    pub fn kill9(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl ServiceProcess {
    /// Runs a binary to completion and returns its standard output; panics if it fails.
    pub fn run_to_end(name: &str, args: &[&str], env: &[(String, String)]) -> String {
        let mut command = Command::new(binary(name));
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command
            .output()
            .unwrap_or_else(|error| panic!("cannot run {name}: {error}"));
        assert!(
            output.status.success(),
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
