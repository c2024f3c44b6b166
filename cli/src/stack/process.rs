//! Detached component processes: start them with a pid file, recognise them later, stop them.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

use super::Probe;

/// Interval between two readiness probes or two liveness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Log lines quoted in the error when a process exits during startup.
const LOG_TAIL_LINES: usize = 15;

/// A component process that the stack starts detached and finds again through its pid file.
pub struct ManagedProcess {
    /// Component name, which is also the stem of its log and pid file names.
    pub name: &'static str,
    /// Component folder and the process's working directory.
    pub dir: PathBuf,
    /// Program name that must appear in the process's command line. Together with the
    /// working directory, it distinguishes our process from an unrelated one that reuses a
    /// stale pid.
    pub program_name: &'static str,
}

/// Program, arguments and environment of a component process.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables set for the process.
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment, because the program would read
    /// them as settings (for example an upstream host to relay to).
    pub env_remove: Vec<String>,
}

/// Result of [`ManagedProcess::stop`].
pub enum StopOutcome {
    NotRunning,
    /// The process exited after SIGTERM.
    Terminated(Pid),
    /// The process outlived the grace period and was killed with SIGKILL.
    Killed(Pid),
}

impl ManagedProcess {
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// Returns the pid from the pid file if that process is still this component, or
    /// `None` when there is no pid file or it is stale.
    pub fn running_pid(&self) -> anyhow::Result<Option<Pid>> {
        let pid_file = self.pid_file();
        let contents = match std::fs::read_to_string(&pid_file) {
            Ok(contents) => contents,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("failed to read {}", pid_file.display()))
            }
        };
        let Ok(raw_pid) = contents.trim().parse::<i32>() else {
            return Ok(None);
        };
        let pid = Pid::from_raw(raw_pid);
        Ok(self.is_alive(pid).then_some(pid))
    }

    /// Checks through `/proc` that `pid` runs `program_name` in the component folder.
    /// A zombie has no working directory any more, so it counts as not alive.
    fn is_alive(&self, pid: Pid) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(cwd) = std::fs::read_link(proc_dir.join("cwd")) else {
            return false;
        };
        let Ok(expected_cwd) = self.dir.canonicalize() else {
            return false;
        };
        if cwd != expected_cwd {
            return false;
        }
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            return false;
        };
        String::from_utf8_lossy(&cmdline).contains(self.program_name)
    }

    /// Starts the process in a new session, so it outlives the CLI and receives no signal
    /// meant for the CLI's terminal, with stdout and stderr appended to the log file. The
    /// pid file is written once the process is spawned.
    pub fn start(&self, launch: &Launch) -> anyhow::Result<Child> {
        let log_file = self.log_file();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_file)
            .with_context(|| format!("failed to open the log file {}", log_file.display()))?;
        // The arguments are left out because the S3 store receives its secret key as one.
        writeln!(
            log,
            "---- medflow stack up: starting {}",
            launch.program.display()
        )
        .with_context(|| format!("failed to write to {}", log_file.display()))?;
        let stderr_log = log
            .try_clone()
            .with_context(|| format!("failed to duplicate the handle of {}", log_file.display()))?;

        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr_log);
        for name in &launch.env_remove {
            command.env_remove(name);
        }
        // Output goes to a file, so terminal colour codes would only clutter the log.
        command.env("NO_COLOR", "1");
        command.envs(launch.env.iter().map(|(name, value)| (name, value)));
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setsid(2), which is async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }

        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", launch.program.display()))?;
        if let Err(error) = write_pid_file(&self.pid_file(), child.id()) {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            return Err(error);
        }
        Ok(child)
    }

    /// Polls `probe` until it succeeds. If the process exits first, or `timeout` passes,
    /// the process is stopped, its pid file removed and the error quotes the log's last lines.
    pub async fn wait_until_ready(
        &self,
        child: &mut Child,
        probe: &Probe,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let pid = Pid::from_raw(child.id() as i32);
        loop {
            if let Some(status) = child
                .try_wait()
                .context("failed to check the started process")?
            {
                let _ = std::fs::remove_file(self.pid_file());
                bail!(
                    "{} exited during startup ({status}); last lines of {}:\n{}",
                    self.program_name,
                    self.log_file().display(),
                    log_tail(&self.log_file())
                );
            }

            let probe_error = match probe.check().await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };

            if started.elapsed() >= timeout {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.wait();
                let _ = std::fs::remove_file(self.pid_file());
                bail!(
                    "{} was not ready within {} s and was stopped (last check: {probe_error:#}); \
                     see {}",
                    self.program_name,
                    timeout.as_secs(),
                    self.log_file().display()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends SIGTERM to the process group, waits up to `grace` for it to exit, then sends
    /// SIGKILL. Removes the pid file once the process is gone.
    pub fn stop(&self, grace: Duration) -> anyhow::Result<StopOutcome> {
        let Some(pid) = self.running_pid()? else {
            remove_if_exists(&self.pid_file())?;
            return Ok(StopOutcome::NotRunning);
        };

        self.signal(pid, Signal::SIGTERM)?;
        let outcome = if self.wait_for_exit(pid, grace) {
            StopOutcome::Terminated(pid)
        } else {
            self.signal(pid, Signal::SIGKILL)?;
            if !self.wait_for_exit(pid, Duration::from_secs(5)) {
                bail!("pid {pid} is still running after SIGKILL; check it with `ps -o pid,stat,cmd -p {pid}`");
            }
            StopOutcome::Killed(pid)
        };

        remove_if_exists(&self.pid_file())?;
        Ok(outcome)
    }

    /// Signals the whole process group when `pid` leads one (every process this stack
    /// starts does, through setsid), so helper processes it forked stop too.
    fn signal(&self, pid: Pid, signal: Signal) -> anyhow::Result<()> {
        let result = match getpgid(Some(pid)) {
            Ok(group) if group == pid => killpg(pid, signal),
            _ => kill(pid, signal),
        };
        match result {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(error) => {
                Err(error).with_context(|| format!("failed to send {signal} to pid {pid}"))
            }
        }
    }

    fn wait_for_exit(&self, pid: Pid, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if !self.is_alive(pid) {
                return true;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        !self.is_alive(pid)
    }
}

/// Writes the pid through a temporary file and a rename, so a reader never sees a
/// partly written pid.
fn write_pid_file(path: &Path, pid: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension("pid.tmp");
    let mut file = File::create(&temporary)
        .with_context(|| format!("failed to create {}", temporary.display()))?;
    writeln!(file, "{pid}").with_context(|| format!("failed to write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("failed to write the pid file {}", path.display()))
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to delete {}", path.display())),
    }
}

fn log_tail(path: &Path) -> String {
    let Ok(contents) = std::fs::read_to_string(path) else {
        return "(log file unreadable)".to_owned();
    };
    let lines: Vec<&str> = contents.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[start..].join("\n")
}

/// Finds an executable named `name` in `preferred_dirs`, then on `PATH`, then in Cargo's
/// bin directory (`$CARGO_HOME/bin` or `~/.cargo/bin`), where `cargo install` puts tools.
pub fn find_program(name: &str, preferred_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin"));

    preferred_dirs
        .iter()
        .cloned()
        .chain(path_dirs)
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;

    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
