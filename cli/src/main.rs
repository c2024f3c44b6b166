//! `medflow`: the operator command line.

mod stack;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "medflow", about = "MedFlow operator command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts, stops or reports the local stack: PostgreSQL roles and databases,
    /// the Kafka-protocol broker, the S3 store and the SMTP catcher.
    Stack {
        #[command(subcommand)]
        action: stack::StackAction,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Stack { action } => stack::run(action).await,
    }
}
