//! `medflow-bench`: measures request latency of the query API under a constant request
//! rate, with the read models seeded through the real relay and projectors.
//!
//! Run it with the release profile on the machine whose numbers you record:
//! `cargo run --release -p medflow-bench -- directory`.

mod load;
mod seed;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medflow-bench",
    about = "Load benchmarks of MedFlow's query API"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,

    /// Requests per second to send.
    #[arg(long, default_value_t = 1000)]
    rate: u32,

    /// Seconds of measured load, after a warm-up of a fifth of that.
    #[arg(long, default_value_t = 20)]
    seconds: u64,

    /// Verified doctors to seed.
    #[arg(long, default_value_t = 500)]
    doctors: usize,
}

#[derive(Subcommand, Clone, Copy)]
enum Scenario {
    /// `GET /doctors` pages of 20 verified doctors, each with its next available slot.
    Directory,
    /// `GET /doctors/{id}/slots` over 14 days for random verified doctors.
    Slots,
    /// Both, one after the other.
    All,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let seeded = seed::seed(cli.doctors).await?;
    let duration = Duration::from_secs(cli.seconds);
    let run_directory = matches!(cli.scenario, Scenario::Directory | Scenario::All);
    let run_slots = matches!(cli.scenario, Scenario::Slots | Scenario::All);
    if run_directory {
        let report = load::run(&seeded, load::Target::Directory, cli.rate, duration).await?;
        println!(
            "{}",
            report.line("GET /doctors?limit=20 (next slot per doctor)")
        );
    }
    if run_slots {
        let report = load::run(&seeded, load::Target::Slots, cli.rate, duration).await?;
        println!("{}", report.line("GET /doctors/{id}/slots over 14 days"));
    }
    Ok(())
}
