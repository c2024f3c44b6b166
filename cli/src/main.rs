//! `medflow`: the operator command line.

mod admin;
mod audit;
mod demo;
mod rebuild_check;
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
    /// Applies pending schema migrations as the owner role.
    Migrate {
        /// PostgreSQL URL of the role that owns the schema.
        #[arg(
            long,
            env = "MEDFLOW_OWNER_DATABASE_URL",
            default_value = "postgres://medflow_owner@127.0.0.1:5432/medflow",
            hide_env_values = true
        )]
        owner_database_url: secrecy::SecretString,
    },
    /// Creates an admin account; the password is read from MEDFLOW_ADMIN_PASSWORD or
    /// the first line of standard input. Uses the command API's environment variables.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Succeed without change when an account with this e-mail address exists.
        #[arg(long)]
        if_missing: bool,
    },
    /// Drives a realistic scenario through the running platform's HTTP APIs.
    Demo(demo::DemoSettings),
    /// Seeds a running platform with doctors, patients and appointments through its
    /// HTTP APIs and prints request counts, errors, latencies and projection lag. Exits
    /// with 1 when a request failed (5xx, unexpected 4xx) or a check did not hold.
    Seed(Box<medflow_cli::seed::SeedSettings>),
    /// The audit trail: verify, replay, FHIR export, sealing and retention.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Data key management.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Rebuilds every projection from the event table into temporary tables and compares
    /// them row by row with the live read models, which stay untouched. Exits with 0 when
    /// all are equal, 1 when any row differs and 2 when the check failed.
    RebuildCheck(rebuild_check::RebuildCheckOptions),
    /// Starts, stops or reports the local stack: PostgreSQL roles and databases,
    /// the Kafka-protocol broker, the S3 store and the SMTP catcher.
    Stack {
        #[command(subcommand)]
        action: stack::StackAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Re-wraps every data key under the first key of MEDFLOW_MASTER_KEYS, after which
    /// the older master keys can be removed from the environment.
    Rotate,
    /// Checks that MEDFLOW_MASTER_KEYS opens the data keys in the database: unwraps the
    /// newest few of every master key id in use. Exits with 1 when one fails, which
    /// means the database was set up with other master keys.
    Check,
    /// Destroys a person's data keys, making their sealed personal data unreadable
    /// everywhere (event log, Kafka, read models) without rewriting the log, and
    /// revokes their sessions. Irreversible.
    Destroy {
        /// Account id of the person.
        #[arg(long)]
        subject: uuid::Uuid,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = runtime_for(&cli.command)
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Builds a single-threaded runtime for replays and exports and a multi-threaded one for
/// the rest. A replay streams the rows of one connection. With one runtime thread, that
/// connection's socket is read where the rows are decoded, which spares a thread wake-up
/// per message batch. The replay encodes and writes its output on a thread of its own.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let streams_replay = matches!(
        command,
        Command::Audit {
            action: audit::AuditAction::Replay { .. } | audit::AuditAction::ExportFhir { .. }
        }
    );
    let mut builder = if streams_replay {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let outcome = match cli.command {
        // The rebuild check has its own exit statuses, so it reports its errors itself.
        Command::RebuildCheck(options) => return Ok(rebuild_check::run(options).await),
        // Verify reports a mismatch with its own exit status.
        Command::Audit { action } => return Ok(audit::run(action).await),
        Command::Seed(settings) => return seed(*settings).await,
        Command::Stack { action } => stack::run(action).await,
        Command::Migrate { owner_database_url } => {
            medflow_infra::db::migrate(&owner_database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin {
            email,
            name,
            if_missing,
        } => admin::create_admin(&email, &name, if_missing).await,
        Command::Keys {
            action: KeysAction::Rotate,
        } => admin::rotate_keys().await,
        Command::Keys {
            action: KeysAction::Destroy { subject },
        } => admin::destroy_subject_keys(subject).await,
        Command::Keys {
            action: KeysAction::Check,
        } => return admin::check_master_keys().await,
        Command::Demo(settings) => demo::run(settings).await,
    };
    outcome.map(|()| std::process::ExitCode::SUCCESS)
}

/// Runs `medflow seed` and prints its summary; a failed request or check exits with 1.
async fn seed(settings: medflow_cli::seed::SeedSettings) -> anyhow::Result<std::process::ExitCode> {
    let report = medflow_cli::seed::run(settings).await?;
    print!("{}", report.render());
    let problems = report.problems();
    if problems.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(std::process::ExitCode::FAILURE)
}
