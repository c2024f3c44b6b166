//! `medflow-bench`: load benchmarks of MedFlow against the real local stack. Each run
//! seeds a fresh database through the command API, relay, Kafka and projectors, which
//! all run in this process on free loopback ports.
//!
//! Run it with the release profile on the machine whose numbers you record:
//! `cargo build --release -p medflow-bench && target/release/medflow-bench all`.

mod audit;
mod booking;
mod broker;
mod child;
mod lag;
mod load;
mod logging;
mod reminders;
mod report;
mod seed;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medflow-bench",
    about = "Load benchmarks of MedFlow's query and command APIs"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,

    /// Query requests per second for `directory` and `slots`.
    #[arg(long, default_value_t = 1000)]
    rate: u32,

    /// Seconds of measured load per scenario, after a warm-up of a fifth of that.
    #[arg(long, default_value_t = 20)]
    seconds: u64,

    /// Verified doctors to seed.
    #[arg(long, default_value_t = 500)]
    doctors: usize,

    /// Appointments to book through the command API before measuring.
    #[arg(long, default_value_t = 20_000)]
    appointments: usize,

    /// Keep-alive connections the query load is sent over.
    #[arg(long, default_value_t = 32)]
    connections: usize,

    /// Patient sessions the query load rotates through. A request writes its session's
    /// `last_seen_at` at most once a minute, so sessions share little; several still
    /// spread those writes.
    #[arg(long, default_value_t = 64)]
    sessions: usize,

    /// Closed-loop workers of `booking-throughput`, and clients of its pgbench baseline.
    #[arg(long, default_value_t = 16)]
    workers: usize,

    /// Commands per second of `projection-lag`.
    #[arg(long, default_value_t = 200)]
    command_rate: u32,

    /// Doctor and patient pairs that `projection-lag` alternates its commands over.
    #[arg(long, default_value_t = 32)]
    lanes: usize,

    /// Broker for the run: `memory` or `sqlite` start a private nisshi with that storage
    /// engine, `shared` uses the stack's broker on 127.0.0.1:9092.
    #[arg(long, value_enum, default_value_t = BrokerChoice::Memory)]
    broker: BrokerChoice,

    /// Reminders of `reminder-burst` that fall due within the same minute.
    #[arg(long, default_value_t = 10_000)]
    reminders: usize,

    /// Patients the burst's reminders are addressed to.
    #[arg(long, default_value_t = 200)]
    reminder_patients: usize,

    /// Sender workers of the reminder service in `reminder-burst` (the service's
    /// default).
    #[arg(long, default_value_t = 8)]
    reminder_workers: usize,

    /// Sizes of the event table, in events, at which `audit-replay` measures, ascending
    /// and separated by commas. Synthetic appointment events fill the table up to each.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000])]
    audit_events: Vec<u64>,

    /// The `medflow` binary that `audit-replay` runs. Default: `medflow` next to this
    /// program, such as target/release/medflow.
    #[arg(long)]
    medflow_bin: Option<PathBuf>,

    /// Seconds after which `audit-replay` stops a COPY or replay pass that is still
    /// running and reports the events it delivered until then.
    #[arg(long, default_value_t = 600)]
    audit_pass_limit: u64,

    /// Markdown file to write the targets, the measured values, the machine and this
    /// command line into, between its `medflow-bench report` marker comments (added
    /// after the first heading if missing). Text outside the markers is kept.
    #[arg(long)]
    write_report: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum BrokerChoice {
    Memory,
    Sqlite,
    Shared,
}

impl BrokerChoice {
    fn storage(self) -> Option<&'static str> {
        match self {
            BrokerChoice::Memory => Some("memory://nisshi/"),
            BrokerChoice::Sqlite => Some("sqlite://broker.db"),
            BrokerChoice::Shared => None,
        }
    }
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// `GET /doctors` pages of 20 verified doctors, each with its next free slot.
    Directory,
    /// `GET /doctors/{id}/slots` over 14 days for doctors spread over the seeded ones.
    Slots,
    /// Both query scenarios, one after the other.
    Queries,
    /// Book + cancel pairs per second through the command API against a pgbench baseline.
    BookingThroughput,
    /// Time from a command's response until the appointments projection applied it.
    ProjectionLag,
    /// Both command scenarios, one after the other, as `all` runs them.
    Commands,
    /// Reminders falling due within one minute, sent over SMTP by the reminder service.
    ReminderBurst,
    /// `medflow audit replay`, `medflow audit verify` and `GET /audit/records` over
    /// 100 000 and 1 000 000 events against a COPY of the same rows. Run alone, it
    /// seeds no doctors and no appointments. It stops the relay and projectors, so
    /// `all` runs it last.
    AuditReplay,
    /// Every scenario above on one seeded database.
    All,
}

impl Scenario {
    fn includes(self, other: Scenario) -> bool {
        self == other
            || self == Scenario::All
            || (self == Scenario::Queries && matches!(other, Scenario::Directory | Scenario::Slots))
            || (self == Scenario::Commands
                && matches!(other, Scenario::BookingThroughput | Scenario::ProjectionLag))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init();
    let duration = Duration::from_secs(cli.seconds);
    let scenario = cli.scenario;
    // The audit scenario writes its own events and reads no doctor or appointment.
    let (doctors, appointments, sessions) = if scenario == Scenario::AuditReplay {
        (0, 0, 1)
    } else {
        (cli.doctors, cli.appointments, cli.sessions)
    };
    let seeded = seed::seed(doctors, sessions, cli.broker.storage()).await?;
    seed::seed_appointments(&seeded, appointments).await?;

    let mut results = Vec::new();
    for target in [load::Target::Directory, load::Target::Slots] {
        let (requested, name) = match target {
            load::Target::Directory => (Scenario::Directory, "directory"),
            load::Target::Slots => (Scenario::Slots, "slots"),
        };
        if !scenario.includes(requested) {
            continue;
        }
        let report = load::run(&seeded, target, cli.rate, duration, cli.connections).await?;
        results.push(finished(
            name,
            report.line(target.label()),
            report.targets(),
        ));
    }
    if scenario.includes(Scenario::BookingThroughput) {
        seed::settle(&seeded).await?;
        let report = booking::run(&seeded, cli.workers, duration).await?;
        results.push(finished(
            "booking-throughput",
            report.lines(),
            report.targets(),
        ));
    }
    if scenario.includes(Scenario::ProjectionLag) {
        seed::settle(&seeded).await?;
        let report = lag::run(&seeded, cli.command_rate, duration, cli.lanes, cli.workers).await?;
        results.push(finished("projection-lag", report.lines(), report.targets()));
    }
    if scenario.includes(Scenario::ReminderBurst) {
        let report = reminders::run(
            &seeded,
            cli.reminders,
            cli.reminder_patients,
            cli.reminder_workers,
        )
        .await?;
        results.push(finished("reminder-burst", report.lines(), report.targets()));
    }
    if scenario.includes(Scenario::AuditReplay) {
        let medflow = match &cli.medflow_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("medflow"),
        };
        let options = audit::Options {
            totals: cli.audit_events.clone(),
            medflow,
            pass_limit: Duration::from_secs(cli.audit_pass_limit),
        };
        let report = audit::run(&seeded, &options).await?;
        results.push(finished("audit-replay", report.lines(), report.targets()));
    }
    if results.len() > 1 {
        println!(
            "\nsummary ({} doctors, {} appointments seeded):",
            cli.doctors, cli.appointments
        );
        for result in &results {
            println!("{}", result.text);
        }
    }
    if let Some(path) = &cli.write_report {
        let machine = report::Machine::read(&seeded.env.owner_client().await).await?;
        let command = std::iter::once("target/release/medflow-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ");
        report::write(path, &report::render(&machine, &command, &results))?;
        println!("wrote the report to {}", path.display());
    }
    // The projectors' consumers leave their group while the run's private broker is
    // still up. Once the broker is gone, closing a consumer can block runtime shutdown
    // for minutes.
    seeded.env.stop_services().await;
    logging::silence();
    Ok(())
}

/// Prints a scenario's output as soon as it ends and keeps it for the summary.
fn finished(
    name: &'static str,
    text: String,
    targets: Vec<report::TargetRow>,
) -> report::ScenarioResult {
    println!("{text}");
    report::ScenarioResult {
        name,
        text,
        targets,
    }
}
