//! Rebuild check: replays each projection from the event table into scratch tables and
//! compares them row by row with the live read models, while the live projectors keep
//! running. Nothing live is written, truncated or locked.
//!
//! Snapshot. One `REPEATABLE READ READ ONLY` transaction on the snapshot connection fixes
//! the data the check reads: the events, the live read-model rows and the live
//! `projection_offsets`, so events committed during the check cannot cause differences.
//! That transaction never writes and so never gets a transaction id. This matters because
//! the relay publishes only events written below the oldest running transaction id
//! (`pg_snapshot_xmin(pg_current_snapshot())`), so one long writing transaction would
//! hold back every event for as long as it runs.
//!
//! Scratch tables. The scratch connection creates temporary tables with the names and
//! definitions of the projection's tables (`CREATE TEMP TABLE t (LIKE public.t INCLUDING
//! ALL)`) plus `projection_offsets`, and sets `search_path` to `pg_temp` alone. The
//! unchanged projection code then writes to them, and a table that `tables()` does not
//! list fails to resolve instead of reaching the live one. Temporary tables need only
//! the TEMP privilege of the application role, and PostgreSQL drops them when the
//! connection closes, even if the check is killed. The check drops them itself after
//! each projection, also on error.
//!
//! The scratch connection imports the snapshot (`SET TRANSACTION SNAPSHOT`) in a short
//! transaction that copies the live rows and offsets into more temporary tables. It then
//! applies the replayed events in one transaction per fetched batch, and compares the
//! temporary tables with `EXCEPT` in both directions. So it holds a transaction id only
//! while it copies the live rows or applies one batch.
//!
//! Lag. The live projectors consume Kafka and may trail the event table. For each
//! aggregate, the live read model contains exactly the events up to its `last_sequence`
//! in `projection_offsets`, because a projector writes both in one transaction and fills
//! any gap from the event table first. The replay therefore applies each aggregate's
//! events only up to that sequence (see `ReplayScope::AppliedByLiveProjector`). The
//! rebuilt rows must then equal the live rows for every aggregate, including the ones
//! still catching up, so no aggregate is left out of the comparison. Aggregates whose
//! offset is below their last sequence in the snapshot are counted as catching up. This
//! relies on every row being written only by the events of one aggregate, which holds
//! for all projections of this crate: each table's primary key is the aggregate id.
//! An offset ahead of the event table shows up as a difference in `projection_offsets`.

use std::sync::Arc;

use anyhow::Context;
use medflow_infra::events::StoredEvent;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::apply::save_sequence;
use super::rebuild::{replay_events, ReplayScope};
use super::{Projection, ReadModelTransaction};

/// Maximum number of primary keys listed per table and direction.
pub const MAX_REPORTED_KEYS: i64 = 20;

/// Columns, as `(table, column)`, that record when a projector ran rather than anything
/// an event contains, so a rebuild cannot reproduce them and the comparison ignores
/// them. `projection_offsets.updated_at` is set to `now()` when an offset is stored.
/// The read-model tables have no such column: `registered_at`, `booked_at`,
/// `updated_at` and their other timestamps come from the event's `recorded_at` or
/// payload, so they are compared like every other column.
pub const WALL_CLOCK_COLUMNS: &[(&str, &str)] = &[("projection_offsets", "updated_at")];

/// Table in which projectors store the last sequence applied per aggregate.
const OFFSETS_TABLE: &str = "projection_offsets";

/// Prefix of the temporary tables that hold the live rows as of the snapshot.
const LIVE_COPY_PREFIX: &str = "rebuild_check_live_";

/// Maximum identifier length in bytes (NAMEDATALEN - 1 in a default PostgreSQL build).
/// PostgreSQL truncates longer names, which could make two copies collide.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Result of [`check_read_models`].
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub projections: Vec<ProjectionReport>,
}

impl CheckReport {
    pub fn has_differences(&self) -> bool {
        self.projections
            .iter()
            .any(ProjectionReport::has_differences)
    }
}

/// Comparison of one projection.
#[derive(Debug, Clone)]
pub struct ProjectionReport {
    pub projection: String,
    pub events_replayed: u64,
    /// Aggregates of the projection's types with at least one event in the snapshot.
    pub aggregates: i64,
    /// Aggregates whose live offset is below their last sequence in the snapshot.
    pub aggregates_catching_up: i64,
    /// Events in the snapshot that the live projector has not applied yet.
    pub events_not_yet_applied: i64,
    /// The projection's tables in `tables()` order, then `projection_offsets`.
    pub tables: Vec<TableReport>,
}

impl ProjectionReport {
    pub fn has_differences(&self) -> bool {
        self.tables.iter().any(TableReport::has_differences)
    }

    pub fn table(&self, name: &str) -> Option<&TableReport> {
        self.tables.iter().find(|table| table.table == name)
    }
}

/// Comparison of one table. A row whose values differ appears in both directions under
/// the same key.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: String,
    /// Primary key columns, the order of the values in each reported key.
    pub key_columns: Vec<String>,
    /// Columns left out of the comparison (see [`WALL_CLOCK_COLUMNS`]).
    pub ignored_columns: Vec<String>,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    pub only_in_live: RowDifferences,
    pub only_in_rebuilt: RowDifferences,
}

impl TableReport {
    pub fn has_differences(&self) -> bool {
        self.only_in_live.rows > 0 || self.only_in_rebuilt.rows > 0
    }
}

/// Rows of one side that the other side lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDifferences {
    pub rows: i64,
    /// Primary key values as text, in key order, for at most [`MAX_REPORTED_KEYS`] rows,
    /// sorted by key. Other column values are never reported, because some contain
    /// sealed personal data.
    pub keys: Vec<Vec<String>>,
}

/// Rebuilds every projection of `projections` into temporary tables and compares them
/// with the live read models, all as of one snapshot. `snapshot` and `scratch` must be
/// two connections to the same database that are not inside a transaction. `scratch`
/// gets temporary tables and a changed `search_path` for the duration of the check.
pub async fn check_read_models(
    snapshot: &mut Client,
    scratch: &mut Client,
    projections: &[Arc<dyn Projection>],
) -> anyhow::Result<CheckReport> {
    let transaction = snapshot
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("failed to start the snapshot transaction")?;
    let snapshot_id: String = transaction
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("failed to export the snapshot")?
        .get(0);
    // The id is spliced into SET TRANSACTION SNAPSHOT, which takes no parameters.
    anyhow::ensure!(
        snapshot_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-'),
        "unexpected snapshot id '{snapshot_id}'"
    );

    let mut reports = Vec::new();
    for projection in projections {
        let report = check_projection(&transaction, &snapshot_id, scratch, &**projection)
            .await
            .with_context(|| format!("rebuild check of projection {} failed", projection.name()))?;
        reports.push(report);
    }
    transaction.rollback().await?;
    Ok(CheckReport {
        projections: reports,
    })
}

/// Names of the tables that one projection's check compares.
struct ComparedTable {
    /// Name of the live table in `public`, and of its rebuilt copy in `pg_temp`.
    name: String,
    /// Name of the temporary table with the live rows as of the snapshot.
    live_copy: String,
}

impl ComparedTable {
    fn new(name: &str) -> anyhow::Result<Self> {
        let live_copy = format!("{LIVE_COPY_PREFIX}{name}");
        anyhow::ensure!(
            live_copy.len() <= MAX_IDENTIFIER_BYTES,
            "table name {name} is too long for the rebuild check: {live_copy} exceeds \
             PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier limit"
        );
        Ok(Self {
            name: name.to_owned(),
            live_copy,
        })
    }
}

async fn check_projection(
    snapshot: &Transaction<'_>,
    snapshot_id: &str,
    scratch: &mut Client,
    projection: &dyn Projection,
) -> anyhow::Result<ProjectionReport> {
    let mut tables = Vec::new();
    for name in projection.tables() {
        anyhow::ensure!(
            *name != OFFSETS_TABLE,
            "projection {} lists {OFFSETS_TABLE} among its tables",
            projection.name()
        );
        tables.push(ComparedTable::new(name)?);
    }
    tables.push(ComparedTable::new(OFFSETS_TABLE)?);

    let outcome = rebuild_and_compare(snapshot, snapshot_id, scratch, projection, &tables).await;
    let cleanup = drop_scratch_tables(scratch, &tables).await;
    match (outcome, cleanup) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(error)) => Err(error),
        (Err(error), Err(cleanup_error)) => {
            tracing::warn!(
                projection = projection.name(),
                error = format!("{cleanup_error:#}"),
                "dropping the scratch tables failed; they disappear when the connection closes"
            );
            Err(error)
        }
        (Err(error), Ok(())) => Err(error),
    }
}

async fn rebuild_and_compare(
    snapshot: &Transaction<'_>,
    snapshot_id: &str,
    scratch: &mut Client,
    projection: &dyn Projection,
    tables: &[ComparedTable],
) -> anyhow::Result<ProjectionReport> {
    scratch
        .batch_execute("SET search_path TO pg_temp")
        .await
        .context("failed to set search_path on the scratch connection")?;
    copy_live_state(scratch, snapshot_id, projection, tables).await?;
    let lag = read_lag(snapshot, projection).await?;

    let replayed = replay_events(
        snapshot,
        projection,
        ReplayScope::AppliedByLiveProjector,
        async |events: &[StoredEvent]| {
            let batch = scratch.transaction().await?;
            let writer = ReadModelTransaction::unprepared(&batch);
            for event in events {
                projection.apply(&writer, event).await.with_context(|| {
                    format!(
                        "replaying {} sequence {} of {} {} into the scratch tables failed",
                        event.event_type, event.sequence, event.aggregate_type, event.aggregate_id
                    )
                })?;
            }
            batch.commit().await?;
            Ok(())
        },
    )
    .await?;
    let offsets = scratch.transaction().await?;
    let writer = ReadModelTransaction::unprepared(&offsets);
    for ((aggregate_type, aggregate_id), sequence) in &replayed.last_sequences {
        // Unqualified, so search_path sends it to the scratch projection_offsets.
        save_sequence(
            &writer,
            projection.name(),
            aggregate_type,
            aggregate_id,
            *sequence,
        )
        .await?;
    }
    offsets.commit().await?;

    let mut reports = Vec::new();
    for table in tables {
        reports.push(compare_table(scratch, table).await?);
    }
    Ok(ProjectionReport {
        projection: projection.name().to_owned(),
        events_replayed: replayed.events,
        aggregates: lag.aggregates,
        aggregates_catching_up: lag.catching_up,
        events_not_yet_applied: lag.events_not_applied,
        tables: reports,
    })
}

/// Creates the empty scratch tables and copies the live rows and this projection's live
/// offsets into temporary tables, reading the live side as of the exported snapshot.
async fn copy_live_state(
    scratch: &mut Client,
    snapshot_id: &str,
    projection: &dyn Projection,
    tables: &[ComparedTable],
) -> anyhow::Result<()> {
    let copy = scratch
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await?;
    copy.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot_id}'"))
        .await
        .context("failed to import the snapshot on the scratch connection")?;
    for table in tables {
        let live = quote_identifier(&table.name);
        let live_copy = quote_identifier(&table.live_copy);
        copy.batch_execute(&format!(
            "CREATE TEMP TABLE {live} (LIKE public.{live} INCLUDING ALL);
             CREATE TEMP TABLE {live_copy} (LIKE public.{live} INCLUDING ALL);"
        ))
        .await
        .with_context(|| format!("failed to create the scratch tables for {}", table.name))?;
        if table.name == OFFSETS_TABLE {
            copy.execute(
                &format!("INSERT INTO pg_temp.{live_copy} SELECT * FROM public.{live} WHERE projection = $1"),
                &[&projection.name()],
            )
            .await?;
        } else {
            copy.execute(
                &format!("INSERT INTO pg_temp.{live_copy} SELECT * FROM public.{live}"),
                &[],
            )
            .await?;
        }
    }
    copy.commit().await?;
    Ok(())
}

struct Lag {
    aggregates: i64,
    catching_up: i64,
    events_not_applied: i64,
}

/// Compares each aggregate's last sequence in the snapshot with the live offset.
async fn read_lag(snapshot: &Transaction<'_>, projection: &dyn Projection) -> anyhow::Result<Lag> {
    let types: Vec<&str> = projection.aggregate_types().to_vec();
    let row = snapshot
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE behind > 0),
                    COALESCE(sum(behind), 0)::bigint
             FROM (
               SELECT greatest(stream.last_sequence - COALESCE(applied.last_sequence, 0), 0) AS behind
               FROM (
                 SELECT aggregate_type, aggregate_id, max(sequence) AS last_sequence
                 FROM events
                 WHERE aggregate_type = ANY($1)
                 GROUP BY aggregate_type, aggregate_id
               ) AS stream
               LEFT JOIN projection_offsets AS applied
                 ON applied.projection = $2
                AND applied.aggregate_type = stream.aggregate_type
                AND applied.aggregate_id = stream.aggregate_id
             ) AS per_aggregate",
            &[&types, &projection.name()],
        )
        .await
        .context("failed to compare the live offsets with the event table")?;
    Ok(Lag {
        aggregates: row.get(0),
        catching_up: row.get(1),
        events_not_applied: row.get(2),
    })
}

async fn compare_table(scratch: &Client, table: &ComparedTable) -> anyhow::Result<TableReport> {
    let live_name = format!("public.{}", quote_identifier(&table.name));
    let columns: Vec<String> = scratch
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&live_name],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let key_columns: Vec<String> = scratch
        .query(
            "SELECT attribute.attname::text
             FROM pg_index AS index
             JOIN pg_attribute AS attribute
               ON attribute.attrelid = index.indrelid AND attribute.attnum = ANY(index.indkey)
             WHERE index.indrelid = $1::text::regclass AND index.indisprimary
             ORDER BY array_position(index.indkey::int2[], attribute.attnum)",
            &[&live_name],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    anyhow::ensure!(
        !key_columns.is_empty(),
        "table {} has no primary key, which the rebuild check needs to name differing rows",
        table.name
    );

    let (ignored_columns, compared_columns): (Vec<String>, Vec<String>) = columns
        .into_iter()
        .partition(|column| WALL_CLOCK_COLUMNS.contains(&(table.name.as_str(), column.as_str())));
    if let Some(key) = key_columns.iter().find(|key| ignored_columns.contains(key)) {
        anyhow::bail!(
            "column {key} of {} is both a primary key column and a wall-clock column",
            table.name
        );
    }

    let rebuilt = format!("pg_temp.{}", quote_identifier(&table.name));
    let live_copy = format!("pg_temp.{}", quote_identifier(&table.live_copy));
    let counts = scratch
        .query_one(
            &format!("SELECT (SELECT count(*) FROM {live_copy}), (SELECT count(*) FROM {rebuilt})"),
            &[],
        )
        .await?;
    let key_as_text: Vec<String> = key_columns
        .iter()
        .map(|column| format!("{}::text", quote_identifier(column)))
        .collect();
    let compared = SelectedColumns {
        columns: quoted_list(&compared_columns),
        key: quoted_list(&key_columns),
        key_as_text: format!("ARRAY[{}]", key_as_text.join(", ")),
    };
    let only_in_live = rows_missing_from(scratch, &live_copy, &rebuilt, &compared).await?;
    let only_in_rebuilt = rows_missing_from(scratch, &rebuilt, &live_copy, &compared).await?;
    Ok(TableReport {
        table: table.name.clone(),
        key_columns,
        ignored_columns,
        live_rows: counts.get(0),
        rebuilt_rows: counts.get(1),
        only_in_live,
        only_in_rebuilt,
    })
}

/// Quoted, comma-separated column lists of one table.
struct SelectedColumns {
    /// Every compared column.
    columns: String,
    /// The primary key columns.
    key: String,
    /// A `text[]` expression of the primary key values.
    key_as_text: String,
}

/// Returns the rows of `from` that `other` lacks, compared on the selected columns, with
/// the keys of the first [`MAX_REPORTED_KEYS`] of them.
async fn rows_missing_from(
    scratch: &Client,
    from: &str,
    other: &str,
    selected: &SelectedColumns,
) -> anyhow::Result<RowDifferences> {
    let SelectedColumns {
        columns,
        key,
        key_as_text,
    } = selected;
    let rows = scratch
        .query(
            &format!(
                "SELECT {key_as_text}, count(*) OVER ()
                 FROM (SELECT {columns} FROM {from} EXCEPT SELECT {columns} FROM {other}) AS difference
                 ORDER BY {key}
                 LIMIT {MAX_REPORTED_KEYS}"
            ),
            &[],
        )
        .await?;
    Ok(RowDifferences {
        rows: rows.first().map_or(0, |row| row.get(1)),
        keys: rows.iter().map(|row| row.get(0)).collect(),
    })
}

async fn drop_scratch_tables(scratch: &Client, tables: &[ComparedTable]) -> anyhow::Result<()> {
    let names: Vec<String> = tables
        .iter()
        .flat_map(|table| [&table.name, &table.live_copy])
        .map(|name| format!("pg_temp.{}", quote_identifier(name)))
        .collect();
    scratch
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {}; RESET search_path;",
            names.join(", ")
        ))
        .await
        .context("failed to drop the scratch tables")
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quoted_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|column| quote_identifier(column))
        .collect::<Vec<_>>()
        .join(", ")
}
