//! `medflow rebuild-check`: rebuilds the projections from the event table into
//! temporary tables and compares them with the live read models. The work happens in
//! `medflow_projectors::framework::rebuild_check`. This module connects, filters the
//! projections and prints the report.

use std::fmt::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use medflow_projectors::framework::rebuild_check::{
    check_read_models, CheckReport, ProjectionReport, RowDifferences, TableReport,
};
use medflow_projectors::{all_projections, Projection};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, NoTls};

/// Exit status when a projection differs from its rebuild.
const EXIT_DIFFERENCES: u8 = 1;
/// Exit status when the check could not run to the end.
const EXIT_FAILED: u8 = 2;

#[derive(clap::Args)]
pub struct RebuildCheckOptions {
    /// PostgreSQL URL. The application role is enough, because the check only reads
    /// the event table and the read models and writes nothing but temporary tables.
    #[arg(
        long,
        env = "MEDFLOW_DATABASE_URL",
        default_value = "postgres://medflow_app@127.0.0.1:5432/medflow",
        hide_env_values = true
    )]
    database_url: SecretString,

    /// Checks only the named projection. Repeat the option to check several. Without
    /// it, every projection is checked.
    #[arg(long = "projection", value_name = "NAME")]
    projections: Vec<String>,
}

/// Runs the check and prints its report. Exits with 0 when every compared table equals
/// its rebuild, 1 when any differs, and 2 when the check failed.
pub async fn run(options: RebuildCheckOptions) -> ExitCode {
    match check(&options).await {
        Ok(report) => {
            print!("{}", render(&report));
            if report.has_differences() {
                ExitCode::from(EXIT_DIFFERENCES)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn check(options: &RebuildCheckOptions) -> anyhow::Result<CheckReport> {
    let projections = select_projections(&options.projections)?;
    let mut snapshot = connect(&options.database_url, "snapshot").await?;
    let mut scratch = connect(&options.database_url, "scratch").await?;
    check_read_models(&mut snapshot, &mut scratch, &projections).await
}

/// Returns the projections named in `names`, in the order of `all_projections()`, or
/// all of them when `names` is empty.
fn select_projections(names: &[String]) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let all = all_projections();
    let known: Vec<&str> = all.iter().map(|projection| projection.name()).collect();
    if let Some(unknown) = names.iter().find(|name| !known.contains(&name.as_str())) {
        anyhow::bail!(
            "unknown projection '{unknown}'; known projections: {}",
            known.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|projection| names.is_empty() || names.iter().any(|name| name == projection.name()))
        .collect())
}

/// Opens a dedicated connection. The check's temporary tables live exactly as long as
/// it, so a pooled connection, which would outlive the check, is not used.
async fn connect(url: &SecretString, purpose: &'static str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url.expose_secret(), NoTls)
        .await
        .context("failed to connect to PostgreSQL at MEDFLOW_DATABASE_URL (or --database-url)")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("rebuild-check: the {purpose} connection to PostgreSQL failed: {error}");
        }
    });
    Ok(client)
}

/// Formats the report for a terminal.
fn render(report: &CheckReport) -> String {
    let mut text = String::new();
    for projection in &report.projections {
        render_projection(&mut text, projection);
        text.push('\n');
    }
    let differing: Vec<&str> = report
        .projections
        .iter()
        .filter(|projection| projection.has_differences())
        .map(|projection| projection.projection.as_str())
        .collect();
    if differing.is_empty() {
        let _ = writeln!(
            text,
            "Result: all {} checked projections equal their rebuild from the event table.",
            report.projections.len()
        );
    } else {
        let _ = writeln!(
            text,
            "Result: {} of {} checked projections differ from their rebuild: {}.",
            differing.len(),
            report.projections.len(),
            differing.join(", ")
        );
    }
    text
}

fn render_projection(text: &mut String, projection: &ProjectionReport) {
    let _ = writeln!(
        text,
        "Projection {}: {} in the event table, {} replayed.",
        projection.projection,
        count(projection.aggregates, "aggregate"),
        count(projection.events_replayed as i64, "event")
    );
    if projection.aggregates_catching_up > 0 {
        let _ = writeln!(
            text,
            "  {} still catching up ({} not yet applied by the live projector),\n    \
             compared at the sequence the live projector has reached.",
            count(projection.aggregates_catching_up, "aggregate"),
            count(projection.events_not_yet_applied, "event")
        );
    }
    for table in &projection.tables {
        render_table(text, table);
    }
}

fn render_table(text: &mut String, table: &TableReport) {
    let verdict = if table.has_differences() {
        format!(
            "{} only in live, {} only in rebuilt",
            count(table.only_in_live.rows, "row"),
            count(table.only_in_rebuilt.rows, "row")
        )
    } else {
        "equal".to_owned()
    };
    let _ = write!(
        text,
        "  {}: {} live, {} rebuilt: {verdict}",
        table.table,
        count(table.live_rows, "row"),
        count(table.rebuilt_rows, "row")
    );
    if !table.ignored_columns.is_empty() {
        let _ = write!(
            text,
            " (not compared: {})",
            table.ignored_columns.join(", ")
        );
    }
    text.push('\n');
    render_keys(
        text,
        "only in live",
        &table.key_columns,
        &table.only_in_live,
    );
    render_keys(
        text,
        "only in rebuilt",
        &table.key_columns,
        &table.only_in_rebuilt,
    );
}

fn render_keys(
    text: &mut String,
    side: &str,
    key_columns: &[String],
    differences: &RowDifferences,
) {
    if differences.rows == 0 {
        return;
    }
    let _ = writeln!(text, "    {side}, by {}:", join_key(key_columns));
    for key in &differences.keys {
        let _ = writeln!(text, "      {}", join_key(key));
    }
    let unlisted = differences.rows - differences.keys.len() as i64;
    if unlisted > 0 {
        let _ = writeln!(text, "      and {unlisted} more");
    }
}

/// Formats `number` with `noun`, adding a plural "s" unless `number` is 1.
fn count(number: i64, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}

/// Joins the parts of a primary key, in parentheses when there are several.
fn join_key(parts: &[String]) -> String {
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("({})", parts.join(", "))
    }
}
