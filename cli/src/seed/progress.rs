//! Progress of the seeding phases: one line per phase redrawn in place on a terminal
//! (indicatif), plain lines every few seconds otherwise, or nothing at all.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Progress display mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Lines redrawn in place when standard output is a terminal, plain lines otherwise.
    Auto,
    /// A plain line per running phase every few seconds.
    Plain,
    /// No progress output.
    None,
}

/// Interval between plain progress lines.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone)]
enum Display {
    Bars(MultiProgress),
    Plain,
    Hidden,
}

/// The progress display of one seeding run.
#[derive(Clone)]
pub struct Progress {
    display: Display,
    notes_shown: Arc<Mutex<HashSet<&'static str>>>,
}

/// How long a phase took and how much of it was done.
#[derive(Debug, Clone)]
pub struct PhaseTiming {
    pub name: &'static str,
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

impl PhaseTiming {
    pub fn rate_per_second(&self) -> f64 {
        rate(self.done, self.elapsed)
    }
}

/// A running phase; [`Phase::finish`] ends its line.
pub struct Phase {
    name: &'static str,
    total: u64,
    done: Arc<AtomicU64>,
    started: Instant,
    bar: Option<ProgressBar>,
    printer: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let display = match mode {
            ProgressMode::Auto if std::io::stdout().is_terminal() => {
                Display::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
            }
            ProgressMode::Auto | ProgressMode::Plain => Display::Plain,
            ProgressMode::None => Display::Hidden,
        };
        Self {
            display,
            notes_shown: Arc::default(),
        }
    }

    /// Starts a phase of `total` items.
    pub fn phase(&self, name: &'static str, total: u64) -> Phase {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (bar, printer) = match &self.display {
            Display::Bars(multi) => {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(bar_style());
                bar.set_prefix(name);
                bar.enable_steady_tick(Duration::from_millis(250));
                (Some(bar), None)
            }
            Display::Plain => {
                let done = done.clone();
                let printer = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(PLAIN_INTERVAL).await;
                        let count = done.load(Ordering::Relaxed);
                        println!("{}", plain_line(name, count, total, started.elapsed()));
                    }
                });
                (None, Some(printer))
            }
            Display::Hidden => (None, None),
        };
        Phase {
            name,
            total,
            done,
            started,
            bar,
            printer,
        }
    }

    /// Prints a message without breaking the progress lines.
    pub fn note(&self, message: &str) {
        match &self.display {
            Display::Bars(multi) => {
                if multi.println(format!("note: {message}")).is_err() {
                    eprintln!("note: {message}");
                }
            }
            Display::Plain | Display::Hidden => eprintln!("note: {message}"),
        }
    }

    /// Prints `message` the first time `key` is noted in this run.
    pub fn note_once(&self, key: &'static str, message: &str) {
        let first = self.notes_shown.lock().expect("notes lock").insert(key);
        if first {
            self.note(message);
        }
    }
}

impl Phase {
    /// Counts one finished item.
    pub fn advance(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(self) -> PhaseTiming {
        let timing = PhaseTiming {
            name: self.name,
            done: self.done.load(Ordering::Relaxed),
            total: self.total,
            elapsed: self.started.elapsed(),
        };
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        if let Some(printer) = &self.printer {
            printer.abort();
            println!(
                "{}",
                plain_line(self.name, timing.done, timing.total, timing.elapsed)
            );
        }
        timing
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(printer) = &self.printer {
            printer.abort();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<13} {bar:28} {pos:>6}/{len:<6} {rate:>9}  {elapsed:>4}")
        .expect("valid progress template")
        .with_key(
            "rate",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.1}/s", rate(state.pos(), state.elapsed()));
            },
        )
        .progress_chars("=> ")
}

fn plain_line(name: &str, done: u64, total: u64, elapsed: Duration) -> String {
    format!(
        "{name}: {done}/{total} in {:.1} s ({:.1}/s)",
        elapsed.as_secs_f64(),
        rate(done, elapsed)
    )
}

fn rate(done: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    }
}
