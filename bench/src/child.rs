//! Runs a program as a child process, timed from spawn to exit, while its memory is
//! sampled from `/proc/PID/status` and its standard output is drained and counted.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Interval between two reads of the child's `/proc/PID/status`.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// Standard output kept as text for the report; the rest is only counted.
const KEPT_OUTPUT: usize = 64 * 1024;

pub struct ChildRun {
    /// Time from spawn until the process exited.
    pub elapsed: Duration,
    pub status: ExitStatus,
    /// True if the process ran past its time limit and was killed.
    pub killed: bool,
    /// Newline characters on standard output: the records of a JSON lines stream.
    pub stdout_lines: u64,
    pub stdout_bytes: u64,
    /// The first `KEPT_OUTPUT` bytes of standard output.
    pub stdout_head: String,
    pub stderr: String,
    /// Memory figures in KiB.
    pub memory: Memory,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM` (peak resident set size) of the last sample taken before the process
    /// exited. It is a running maximum, so it includes peaks between two samples; only
    /// the last interval before the exit (at most `SAMPLE_INTERVAL`) is not covered.
    pub peak_rss_kib: Option<u64>,
    /// Largest `VmRSS` among the samples.
    pub max_sampled_rss_kib: Option<u64>,
    pub samples: u64,
}

impl ChildRun {
    /// Fails with the program's output unless it exited with status 0.
    pub fn ensure_success(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.status.success(),
            "{what} exited with {}; standard output: {}; standard error: {}",
            self.status,
            self.stdout_head.trim(),
            self.stderr.trim()
        );
        Ok(())
    }
}

/// Runs `program` with `args` and the extra environment `envs` (added to this
/// process's environment), with standard input closed. A process still running after
/// `limit` is killed with SIGKILL.
pub async fn run(
    program: &Path,
    args: &[&str],
    envs: &[(String, String)],
    limit: Option<Duration>,
) -> anyhow::Result<ChildRun> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| anyhow::anyhow!("failed to start {}: {error}", program.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("{} exited before its pid was read", program.display()))?;
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample_memory(pid, stop_sampling.clone()));

    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("standard output of the child is not piped"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("standard error of the child is not piped"))?;
    let drained = tokio::spawn(drain(stdout));
    let stderr = tokio::spawn(read_text(stderr));
    let mut killed = false;
    let status = match limit {
        None => child.wait().await?,
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                killed = true;
                child.start_kill()?;
                child.wait().await?
            }
        },
    };
    let elapsed = started.elapsed();
    stop_sampling.cancel();
    let memory = sampler.await?;
    let drained = drained.await??;
    let stderr = stderr.await??;

    Ok(ChildRun {
        elapsed,
        status,
        killed,
        stdout_lines: drained.lines,
        stdout_bytes: drained.bytes,
        stdout_head: String::from_utf8_lossy(&drained.head).into_owned(),
        stderr,
        memory,
    })
}

struct Drained {
    lines: u64,
    bytes: u64,
    head: Vec<u8>,
}

async fn drain(mut reader: impl AsyncRead + Unpin) -> anyhow::Result<Drained> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut drained = Drained {
        lines: 0,
        bytes: 0,
        head: Vec::new(),
    };
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return Ok(drained);
        }
        let chunk = &buffer[..read];
        drained.bytes += read as u64;
        drained.lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        let room = KEPT_OUTPUT.saturating_sub(drained.head.len());
        drained
            .head
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
}

async fn read_text(mut reader: impl AsyncRead + Unpin) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads `/proc/{pid}/status` every `SAMPLE_INTERVAL` until `stop` is cancelled. A
/// process that has exited but is not reaped yet has no `Vm` lines any more, so such
/// reads are skipped.
async fn sample_memory(pid: u32, stop: CancellationToken) -> Memory {
    let path = format!("/proc/{pid}/status");
    let mut memory = Memory::default();
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return memory,
            _ = ticks.tick() => {}
        }
        let Ok(status) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        let rss = status_field_kib(&status, "VmRSS:");
        let peak = status_field_kib(&status, "VmHWM:");
        if rss.is_none() && peak.is_none() {
            continue;
        }
        memory.samples += 1;
        if let Some(rss) = rss {
            memory.max_sampled_rss_kib = Some(memory.max_sampled_rss_kib.unwrap_or(0).max(rss));
        }
        if let Some(peak) = peak {
            memory.peak_rss_kib = Some(memory.peak_rss_kib.unwrap_or(0).max(peak));
        }
    }
}

/// Parses a line such as `VmRSS:     12345 kB` of `/proc/PID/status`.
fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_field_parses_kib() {
        let status = "Name:\tmedflow\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_field_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(10_240));
        assert_eq!(status_field_kib(status, "VmSwap:"), None);
    }
}
