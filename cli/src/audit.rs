//! `medflow audit`: verify the hash chain and checkpoints, replay or export the trail,
//! seal checkpoints now, manage the signing key and purge entries past retention.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use medflow_infra::audit::checkpoint::Sealer;
use medflow_infra::audit::fhir::{FhirFormat, FhirWriter};
use medflow_infra::audit::records::AuditRecord;
use medflow_infra::audit::replay::{self, Format, Replay, ReplayFilter};
use medflow_infra::audit::retention;
use medflow_infra::audit::signing::{CheckpointSigner, TrustedKeys};
use medflow_infra::audit::verify;
use medflow_infra::audit::{AuditEntry, AuditLog, Outcome};
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use secrecy::SecretString;
use uuid::Uuid;

#[derive(Args)]
pub struct Connection {
    /// PostgreSQL URL of the application role.
    #[arg(
        long,
        env = "MEDFLOW_DATABASE_URL",
        default_value = "postgres://medflow_app@127.0.0.1:5432/medflow",
        hide_env_values = true
    )]
    database_url: SecretString,
}

#[derive(Subcommand)]
pub enum AuditAction {
    /// Recomputes the hash chain of every event and audit entry and checks every
    /// checkpoint's signature. Prints per stream the rows checked and the position sealed
    /// up to, or the first row that does not match and why. Exits with 0 when intact, 1 on a mismatch and 2
    /// when the check could not run.
    Verify {
        #[command(flatten)]
        connection: Connection,
        /// Base64 Ed25519 public keys, separated by commas, trusted to sign checkpoints.
        /// Without them, the key of MEDFLOW_AUDIT_SIGNING_KEY is used.
        #[arg(long, env = "MEDFLOW_AUDIT_PUBLIC_KEYS", default_value = "")]
        public_keys: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds after which a row must be covered by a signed checkpoint; an older
        /// unsealed row means checkpoints were removed or no sealer runs.
        #[arg(long, default_value_t = verify::MAX_UNSEALED_AGE.as_secs())]
        max_unsealed_age_secs: u64,
    },
    /// Streams events and access entries in order to standard output.
    Replay {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format: JSON lines or CSV with a header row.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ReplayFormat,
    },
    /// Streams the same selection as FHIR R4 AuditEvent resources.
    ExportFhir {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format: one AuditEvent per line, or one collection Bundle.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
    },
    /// Seals every range that can no longer change now, with MEDFLOW_AUDIT_SIGNING_KEY,
    /// instead of waiting for the relay's sealer.
    Seal {
        #[command(flatten)]
        connection: Connection,
    },
    /// Prints the public key of MEDFLOW_AUDIT_SIGNING_KEY, for MEDFLOW_AUDIT_PUBLIC_KEYS.
    PublicKey,
    /// Prints a new random signing key (base64 Ed25519 seed).
    GenerateKey,
    /// Deletes audit entries recorded before a date at least six years ago. Refuses any
    /// later date. Events are never purged.
    Purge {
        /// PostgreSQL URL of the role that owns the schema.
        #[arg(
            long,
            env = "MEDFLOW_OWNER_DATABASE_URL",
            default_value = "postgres://medflow_owner@127.0.0.1:5432/medflow",
            hide_env_values = true
        )]
        owner_database_url: SecretString,
        /// Entries recorded before this date (YYYY-MM-DD, midnight UTC) or RFC 3339
        /// date-time are deleted.
        #[arg(long, value_parser = parse_instant)]
        before: DateTime<Utc>,
    },
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only records at or after this date (YYYY-MM-DD) or RFC 3339 date-time.
    #[arg(long, value_parser = parse_instant)]
    from: Option<DateTime<Utc>>,
    /// Only records before this date (YYYY-MM-DD) or RFC 3339 date-time.
    #[arg(long, value_parser = parse_instant)]
    to: Option<DateTime<Utc>>,
    /// Events of this aggregate type, and access entries with this target type.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(replay::RECORD_TYPES))]
    aggregate_type: Option<String>,
    /// Events of this aggregate, and access entries with this target id.
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Only what this account did.
    #[arg(long, value_parser = parse_uuid)]
    actor_id: Option<Uuid>,
    /// Only what touched this patient.
    #[arg(long, value_parser = parse_uuid)]
    patient_id: Option<Uuid>,
    /// Which records: all, events (changes) or access (access entries).
    #[arg(long, value_enum, default_value = "all")]
    kind: Kind,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    All,
    Events,
    Access,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReplayFormat {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Ndjson,
    Bundle,
}

/// Parses a date (midnight UTC) or an RFC 3339 date-time.
fn parse_instant(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.to_utc())
        .map_err(|_| format!("'{raw}' is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time"))
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<ReplayFilter> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            anyhow::ensure!(to > from, "--to ({to}) must be later than --from ({from})");
        }
        if let Some(aggregate_id) = self.aggregate_id.as_deref() {
            if let Some(problem) =
                replay::aggregate_id_problem(self.aggregate_type.as_deref(), aggregate_id)
            {
                anyhow::bail!("--aggregate-id: {problem}");
            }
        }
        Ok(ReplayFilter {
            from: self.from,
            to: self.to,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            actor_id: self.actor_id,
            patient_id: self.patient_id,
            include_events: !matches!(self.kind, Kind::Access),
            include_access: !matches!(self.kind, Kind::Events),
        })
    }
}

pub async fn run(action: AuditAction) -> ExitCode {
    match execute(action).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(action: AuditAction) -> anyhow::Result<ExitCode> {
    match action {
        AuditAction::Verify {
            connection,
            public_keys,
            json,
            max_unsealed_age_secs,
        } => {
            let max_unsealed_age = std::time::Duration::from_secs(max_unsealed_age_secs);
            verify(connection, &public_keys, json, max_unsealed_age).await
        }
        AuditAction::Replay {
            connection,
            filter,
            format,
        } => {
            let format = match format {
                ReplayFormat::Jsonl => Format::JsonLines,
                ReplayFormat::Csv => Format::Csv,
            };
            stream(connection, filter.filter()?, Output::Records(format)).await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::ExportFhir {
            connection,
            filter,
            format,
        } => {
            let format = match format {
                ExportFormat::Ndjson => FhirFormat::Ndjson,
                ExportFormat::Bundle => FhirFormat::Bundle,
            };
            stream(
                connection,
                filter.filter()?,
                Output::Fhir(FhirWriter::new(format)),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::Seal { connection } => {
            let mut sealer = Sealer::new(signer_from_env()?);
            let pool = medflow_infra::db::pg_pool(&connection.database_url, 1)?;
            let mut client = pool.get().await?;
            let sealed = sealer.seal_now(&mut client).await?;
            for checkpoint in &sealed {
                println!(
                    "sealed checkpoint {} of {}: positions {} to {}, {} rows",
                    checkpoint.checkpoint_id,
                    checkpoint.stream,
                    checkpoint.first_position,
                    checkpoint.last_position,
                    checkpoint.row_count
                );
            }
            if sealed.is_empty() {
                println!("nothing new to seal");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::PublicKey => {
            println!("{}", signer_from_env()?.public_key_base64());
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::GenerateKey => {
            println!("{}", CheckpointSigner::generate_seed());
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::Purge {
            owner_database_url,
            before,
        } => {
            let pool = medflow_infra::db::pg_pool(&owner_database_url, 1)?;
            let mut client = pool.get().await?;
            let purged = retention::purge_entries_before(&mut client, before, Utc::now()).await;
            // The pool's one connection goes back for the entry, which is written after
            // the purge so that the purge never deletes it.
            drop(client);
            match purged {
                Ok(deleted) => {
                    record_cli_entry(&pool, "cli audit purge", "purge", Outcome::Success, None)
                        .await?;
                    println!("deleted {deleted} audit entries recorded before {before}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error @ retention::PurgeError::WithinRetention { .. }) => {
                    record_cli_entry(&pool, "cli audit purge", "purge", Outcome::Denied, None)
                        .await?;
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(1))
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}

fn signer_from_env() -> anyhow::Result<CheckpointSigner> {
    let key = std::env::var("MEDFLOW_AUDIT_SIGNING_KEY")
        .map_err(|_| anyhow::anyhow!("MEDFLOW_AUDIT_SIGNING_KEY is not set"))?;
    CheckpointSigner::from_base64_seed(&SecretString::from(key)).map_err(anyhow::Error::msg)
}

async fn verify(
    connection: Connection,
    public_keys: &str,
    json: bool,
    max_unsealed_age: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let mut keys = TrustedKeys::parse(public_keys)
        .map_err(|reason| anyhow::anyhow!("MEDFLOW_AUDIT_PUBLIC_KEYS: {reason}"))?;
    if keys.is_empty() {
        keys = keys.with_signer(&signer_from_env().map_err(|error| {
            anyhow::anyhow!("no trusted key: set MEDFLOW_AUDIT_PUBLIC_KEYS ({error})")
        })?);
    }
    let pool = medflow_infra::db::pg_pool(&connection.database_url, 1)?;
    let mut client = pool.get().await?;
    let reports = verify::verify_all(&mut client, &keys, max_unsealed_age).await?;
    drop(client);
    record_cli_entry(&pool, "cli audit verify", "verify", Outcome::Success, None).await?;
    let intact = reports.iter().all(verify::StreamReport::is_intact);
    if json {
        let report = serde_json::json!({"intact": intact, "streams": reports});
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for report in &reports {
            println!("{}", report.summary());
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

enum Output {
    Records(Format),
    Fhir(FhirWriter),
}

/// Decoded batches waiting for the output thread, at most. One is enough to keep both
/// sides busy, and each more costs about 2 MB of peak memory when the output is slower.
const BATCHES_IN_FLIGHT: usize = 1;

/// Streams a replay to standard output, batch by batch. The database side (fetching and
/// decoding rows) and the output side (encoding and writing) run on different threads,
/// so a replay uses two cores when it has them.
async fn stream(
    connection: Connection,
    filter: ReplayFilter,
    output: Output,
) -> anyhow::Result<()> {
    let pool = medflow_infra::db::pg_pool(&connection.database_url, 2)?;
    // Client addresses are opened when the master keys are at hand, and left out
    // otherwise.
    let keys = std::env::var("MEDFLOW_MASTER_KEYS")
        .ok()
        .and_then(|raw| MasterKeys::parse(&SecretString::from(raw)).ok())
        .map(|masters| KeyRing::new(pool.clone(), masters));
    record_replay(&pool, &filter, &output).await?;
    let client = pool.get().await?;
    let mut replay = Replay::start(&client, &filter).await?;
    let (batches, received) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    let writer = std::thread::spawn(move || write_output(output, received));
    let read = async {
        let mut batch = replay.next_batch(&client).await?;
        while !batch.is_empty() {
            if let Some(keys) = &keys {
                replay::open_client_addresses(keys, &mut batch).await;
            }
            // The next batch is fetched and decoded while this one waits for the output
            // thread, so PostgreSQL always has a FETCH to work on.
            let (sent, next) =
                futures::future::join(batches.send(batch), replay.next_batch(&client)).await;
            if sent.is_err() {
                // The writer stopped on an error, which its result reports.
                return Ok(());
            }
            batch = next?;
        }
        Ok(())
    };
    let read: anyhow::Result<()> = read.await;
    // Closing the channel ends the writer's loop after the last batch.
    drop(batches);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output thread panicked"))?;
    read?;
    written?;
    replay.finish(&client).await?;
    Ok(())
}

/// Encodes the batches it receives and writes them to standard output, with the
/// format's header and footer around them.
fn write_output(
    mut output: Output,
    mut batches: tokio::sync::mpsc::Receiver<Vec<AuditRecord>>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match &output {
        Output::Records(format) => out.write_all(&format.header()?)?,
        Output::Fhir(writer) => out.write_all(&writer.header())?,
    }
    let mut bytes = Vec::new();
    while let Some(batch) = batches.blocking_recv() {
        bytes.clear();
        match &mut output {
            Output::Records(format) => format.encode_into(&batch, &mut bytes)?,
            Output::Fhir(writer) => bytes = writer.encode(&batch)?,
        }
        out.write_all(&bytes)?;
    }
    if let Output::Fhir(writer) = &output {
        out.write_all(&writer.footer())?;
    }
    out.flush()?;
    Ok(())
}

/// Records the replay in the audit trail, as the query API does for its replays.
async fn record_replay(
    pool: &deadpool_postgres::Pool,
    filter: &ReplayFilter,
    output: &Output,
) -> anyhow::Result<()> {
    let action = match output {
        Output::Records(_) => "cli audit replay",
        Output::Fhir(_) => "cli audit export-fhir",
    };
    record_cli_entry(pool, action, "replay", Outcome::Success, filter.patient_id).await
}

/// Records a CLI action on the audit trail (`target_id` is `replay`, `verify` or
/// `purge`). The CLI acts with database credentials, not a session, so the entry has no
/// actor, and the operating-system user is kept in the request id.
async fn record_cli_entry(
    pool: &deadpool_postgres::Pool,
    action: &'static str,
    target_id: &str,
    outcome: Outcome,
    patient_id: Option<Uuid>,
) -> anyhow::Result<()> {
    let user = operating_system_user();
    let mut entry = AuditEntry::new(action, outcome);
    entry.target_type = Some("audit_trail".into());
    entry.target_id = Some(target_id.to_owned());
    entry.patient_id = patient_id;
    entry.request_id = Some(format!("cli-{user}-{}", Uuid::new_v4()));
    AuditLog::new(pool.clone()).record(&entry).await
}

fn parse_uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| format!("'{raw}' is not a valid UUID"))
}

/// Names the user running the CLI for the request id of its audit entry: `$USER`, else
/// `$LOGNAME` (a service manager may set neither), else the process's user id, which
/// Linux shows as the owner of `/proc/self`.
fn operating_system_user() -> String {
    use std::os::unix::fs::MetadataExt;
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|metadata| format!("uid{}", metadata.uid()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
