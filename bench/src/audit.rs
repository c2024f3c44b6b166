//! Audit replay and verify: events per second of `medflow audit replay --kind events`,
//! of `GET /audit/records?kind=events`, of `medflow audit seal` and of
//! `medflow audit verify`, each against a raw `COPY (SELECT …) TO STDOUT` of the same
//! rows in the same run, and the replaying process's peak resident set size.
//!
//! The events are inserted straight into the `events` table with SQL, one statement
//! per sequence number and chunk of aggregates, so the `seal_event` trigger still
//! computes every hash chain link, subject and `event_subjects` row. The table is filled up to
//! each requested total (100 000 and 1 000 000 by default) and measured at each.
//! The relay and projectors are stopped first: they would copy the synthetic events
//! to Kafka and project them while the run measures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use medflow_tests::api::{unique_email, PASSWORD};
use serde_json::json;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::child::{self, ChildRun, Memory};
use crate::report::TargetRow;
use crate::seed::Seeded;

/// Aggregates whose events one round of inserts writes. The statement for sequence 1
/// inserts one row per aggregate, so no statement inserts more than this many rows.
const CHUNK_AGGREGATES: i64 = 50_000;
/// Events of synthetic aggregate `g`, from 1 to 5, as SQL over the column `g`.
/// `events_of` computes the same in Rust.
const EVENTS_OF_SQL: &str = "1 + (g * 3) % 5";
const MAX_EVENTS_PER_AGGREGATE: i64 = 5;
/// Distinct patients and doctors the synthetic appointments are spread over.
const PATIENTS: i64 = 50_000;
const DOCTORS: i64 = 500;

/// Target ratio of replay (and verify) events per second to the COPY baseline's.
const TARGET_RATIO: f64 = 0.3;
/// Target replay throughput, in events per second.
const TARGET_EVENTS_PER_SECOND: f64 = 100_000.0;

/// The query `medflow audit replay` runs for events. Keep in line with `EVENT_COLUMNS`
/// and `EVENT_SOURCE` in infra/src/audit/replay.rs, which are private to that module.
const REPLAY_SELECT: &str = "SELECT e.global_position, e.recorded_at, e.aggregate_type, \
     e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::text, \
     e.metadata::text, e.subject_id FROM events e ORDER BY e.global_position";
/// The event rows alone, without the subject: the baseline every ratio is taken against.
const PLAIN_SELECT: &str = "SELECT e.global_position, e.recorded_at, e.aggregate_type, \
     e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::text, \
     e.metadata::text FROM events e ORDER BY e.global_position";
/// The columns `medflow audit verify` reads (`EVENT_HASH_COLUMNS` in
/// infra/src/audit/chain.rs).
const VERIFY_SELECT: &str = "SELECT global_position, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload::text, metadata::text, transaction_id::text, \
     recorded_at, hash FROM events ORDER BY global_position";

/// One timed pass over the events.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub events: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub memory: Option<Memory>,
    /// False if the pass was stopped at the time limit; `events` then counts what it
    /// delivered until then.
    pub finished: bool,
}

impl Pass {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn from_child(run: &ChildRun, events: u64) -> Self {
        Self {
            events,
            bytes: run.stdout_bytes,
            elapsed: run.elapsed,
            memory: Some(run.memory),
            finished: !run.killed,
        }
    }
}

/// The COPY baseline and both replays over one state of the table.
pub struct ReplayPasses {
    pub copy: Pass,
    pub replay: Pass,
    pub replay_http: Pass,
}

/// Measurements at one size of the event table.
pub struct Step {
    /// Rows in `events`, synthetic ones and those written before the scenario.
    pub events: u64,
    pub inserted: u64,
    pub insert_elapsed: Duration,
    pub average_payload_bytes: f64,
    pub average_metadata_bytes: f64,
    pub shipped: ReplayPasses,
    pub copy_plain: Pass,
    pub copy_verify_columns: Pass,
    pub seal: Pass,
    pub seal_output: String,
    pub verify: Pass,
    pub verify_output: String,
}

pub struct AuditReport {
    pub steps: Vec<Step>,
}

/// Memory counts as flat when the replay's peak RSS at the largest table size is at
/// most this multiple of its peak at the smallest.
const FLAT_MEMORY_FACTOR: f64 = 1.25;

impl AuditReport {
    pub fn targets(&self) -> Vec<TargetRow> {
        let mut rows = Vec::new();
        for step in &self.steps {
            let baseline = step.copy_plain.events_per_second();
            let passes = [
                ("medflow audit replay", &step.shipped.replay),
                ("GET /audit/records", &step.shipped.replay_http),
                ("medflow audit verify", &step.verify),
            ];
            for (label, pass) in passes {
                let rate = pass.events_per_second();
                let ratio = rate / baseline;
                rows.push(TargetRow::new(
                    format!(
                        "{label} at {} events ≥ {TARGET_RATIO} × COPY of the event rows and ≥ {TARGET_EVENTS_PER_SECOND:.0} events/s",
                        step.events
                    ),
                    format!("{rate:.0} events/s, ratio {ratio:.3} (COPY {baseline:.0} events/s)"),
                    pass.finished
                        && ratio >= TARGET_RATIO
                        && rate >= TARGET_EVENTS_PER_SECOND,
                ));
            }
        }
        let peaks: Vec<(u64, Option<u64>)> = self
            .steps
            .iter()
            .map(|step| {
                let peak = step
                    .shipped
                    .replay
                    .memory
                    .and_then(|memory| memory.peak_rss_kib);
                (step.events, peak)
            })
            .collect();
        if let (Some((small, Some(first))), Some((large, Some(last)))) =
            (peaks.first().copied(), peaks.last().copied())
        {
            let mib = |kib: u64| kib as f64 / 1024.0;
            rows.push(TargetRow::new(
                format!("replay memory flat from {small} to {large} events (peak RSS)"),
                format!("{:.1} MiB → {:.1} MiB", mib(first), mib(last)),
                large > small && last as f64 <= first as f64 * FLAT_MEMORY_FACTOR,
            ));
        }
        rows
    }

    pub fn lines(&self) -> String {
        let mut text = String::new();
        for step in &self.steps {
            text.push_str(&step.lines());
            text.push('\n');
        }
        text.push_str("replay peak RSS (VmHWM, max sampled VmRSS):");
        for step in &self.steps {
            text.push_str(&format!(
                "\n  {} events: {} after {} events{}",
                step.events,
                peak(step.shipped.replay.memory),
                step.shipped.replay.events,
                if step.shipped.replay.finished {
                    ""
                } else {
                    " (stopped at the time limit)"
                },
            ));
        }
        text
    }
}

impl Step {
    fn lines(&self) -> String {
        let mut text = format!(
            "audit replay at {} events ({} inserted in {:.1} s, {:.0} events/s through the sealing trigger; \
             average payload {:.0} B, metadata {:.0} B):\n",
            self.events,
            self.inserted,
            self.insert_elapsed.as_secs_f64(),
            self.inserted as f64 / self.insert_elapsed.as_secs_f64(),
            self.average_payload_bytes,
            self.average_metadata_bytes,
        );
        text.push_str(&format!(
            "  {:<52} {:>9} {:>8} {:>9} {:>11} {:>7} {:>9} {:>24}\n",
            "pass",
            "events",
            "finished",
            "seconds",
            "events/s",
            "ratio",
            "MiB out",
            "peak RSS (max VmRSS)"
        ));
        let baseline = &self.copy_plain;
        let rows = [
            (
                "COPY (SELECT ... FROM events) TO STDOUT [baseline]",
                baseline,
            ),
            ("COPY (replay's SELECT, with subjects)", &self.shipped.copy),
            (
                "COPY (verify's SELECT) TO STDOUT",
                &self.copy_verify_columns,
            ),
            ("medflow audit replay --kind events", &self.shipped.replay),
            ("GET /audit/records?kind=events", &self.shipped.replay_http),
            ("medflow audit seal (new rows only)", &self.seal),
            ("medflow audit verify", &self.verify),
        ];
        for (label, pass) in rows {
            text.push_str(&row(label, pass, baseline));
        }
        text.push_str(&format!(
            "  targets: {}\n",
            targets(baseline, &self.shipped, &self.verify)
        ));
        text.push_str(&format!(
            "  seal: {}\n",
            self.seal_output.trim().replace('\n', "; ")
        ));
        text.push_str(&format!(
            "  verify: {}",
            self.verify_output.trim().replace('\n', "; ")
        ));
        text
    }
}

fn row(label: &str, pass: &Pass, baseline: &Pass) -> String {
    let rate = pass.events_per_second();
    format!(
        "  {label:<52} {:>9} {:>8} {:>9.2} {:>11.0} {:>7.3} {:>9.1} {:>24}\n",
        pass.events,
        if pass.finished { "yes" } else { "no" },
        pass.elapsed.as_secs_f64(),
        rate,
        rate / baseline.events_per_second(),
        pass.bytes as f64 / (1024.0 * 1024.0),
        peak(pass.memory),
    )
}

/// Formats the targets, each with its measured value against `baseline`, the COPY of
/// the event rows. The rates of a pass stopped at the time limit are over the events it
/// delivered until then.
fn targets(baseline: &Pass, passes: &ReplayPasses, verify: &Pass) -> String {
    let met = |yes: bool| if yes { "met" } else { "NOT met" };
    let copy_rate = baseline.events_per_second();
    let replay_rate = passes.replay.events_per_second();
    let verify_rate = verify.events_per_second();
    let partial = if baseline.finished && passes.replay.finished {
        ""
    } else {
        " (a pass was stopped at the time limit)"
    };
    format!(
        "replay/COPY {:.3} >= {TARGET_RATIO}: {}; replay {:.0} events/s >= {TARGET_EVENTS_PER_SECOND:.0}: {}; \
         verify/COPY {:.3} >= {TARGET_RATIO}: {}; verify {:.0} events/s >= {TARGET_EVENTS_PER_SECOND:.0}: {}{partial}",
        replay_rate / copy_rate,
        met(replay_rate / copy_rate >= TARGET_RATIO),
        replay_rate,
        met(replay_rate >= TARGET_EVENTS_PER_SECOND),
        verify_rate / copy_rate,
        met(verify_rate / copy_rate >= TARGET_RATIO),
        verify_rate,
        met(verify_rate >= TARGET_EVENTS_PER_SECOND),
    )
}

fn peak(memory: Option<Memory>) -> String {
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    match memory {
        None => "-".to_owned(),
        Some(memory) => format!(
            "{} ({})",
            memory.peak_rss_kib.map_or("?".to_owned(), mib),
            memory.max_sampled_rss_kib.map_or("?".to_owned(), mib)
        ),
    }
}

/// Settings of the scenario, from the command line.
pub struct Options {
    /// Sizes of the event table to measure at, ascending.
    pub totals: Vec<u64>,
    /// The release build of the operator command.
    pub medflow: PathBuf,
    /// COPY and replay passes still running after this long are stopped.
    pub pass_limit: Duration,
}

/// Connections, the operator command and its environment, shared by every pass.
struct Context<'a> {
    seeded: &'a Seeded,
    owner: Client,
    /// A connection of the application role, as the replay uses.
    reader: Client,
    medflow: &'a Path,
    keys: Keys,
    compliance_token: String,
    pass_limit: Duration,
}

/// Stops the relay and projectors of `seeded`, fills its event table up to each total
/// of `options.totals` and measures every pass at each size.
pub async fn run(seeded: &Seeded, options: &Options) -> anyhow::Result<AuditReport> {
    anyhow::ensure!(
        options.medflow.exists(),
        "{} is missing; build it with `cargo build --release -p medflow-cli` or pass --medflow-bin",
        options.medflow.display()
    );
    anyhow::ensure!(
        options.totals.windows(2).all(|pair| pair[0] < pair[1]),
        "--audit-events must be ascending, got {:?}",
        options.totals
    );
    // The compliance account is created while the projectors still run; the query API
    // stays up after they stop.
    let compliance_token = compliance_token(seeded).await?;
    seeded.env.stop_services().await;

    let context = Context {
        seeded,
        owner: seeded.env.owner_client().await,
        reader: seeded.env.app_client().await,
        medflow: &options.medflow,
        keys: signing_keys(seeded, &options.medflow).await?,
        compliance_token,
        pass_limit: options.pass_limit,
    };
    let tag = Uuid::new_v4().simple().to_string();
    let mut next_aggregate = 0;
    let mut steps = Vec::with_capacity(options.totals.len());
    for &total in &options.totals {
        let existing = count_events(&context.owner).await?;
        let to_insert = total.saturating_sub(existing);
        if existing > total {
            eprintln!(
                "audit replay: the table already holds {existing} events, more than {total}; measuring as is"
            );
        }
        eprintln!("audit replay: inserting {to_insert} events to reach {total}");
        let started = Instant::now();
        next_aggregate = insert_events(&context.owner, &tag, next_aggregate, to_insert).await?;
        let insert_elapsed = started.elapsed();
        // Every pass then reads a vacuumed table with hint bits set, as autovacuum
        // would leave it, instead of the first pass paying for that. VACUUM cannot
        // run inside the implicit transaction of a multi-statement query.
        for table in ["events", "event_subjects"] {
            context
                .owner
                .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                .await?;
        }
        let step = measure(&context, to_insert, insert_elapsed).await?;
        eprintln!("{}", step.lines());
        steps.push(step);
    }
    Ok(AuditReport { steps })
}

/// Environment of the `medflow` runs: the benchmark database and a newly generated
/// signing key, trusted together with the key the relay sealed earlier ranges with.
struct Keys {
    envs: Vec<(String, String)>,
}

async fn signing_keys(seeded: &Seeded, medflow: &Path) -> anyhow::Result<Keys> {
    let generated = child::run(medflow, &["audit", "generate-key"], &[], None).await?;
    generated.ensure_success("medflow audit generate-key")?;
    let signing_key = generated.stdout_head.trim().to_owned();
    let mut envs = seeded.env.env_vars();
    envs.retain(|(key, _)| !key.starts_with("MEDFLOW_AUDIT_"));
    envs.push(("MEDFLOW_AUDIT_SIGNING_KEY".into(), signing_key));
    let public = child::run(medflow, &["audit", "public-key"], &envs, None).await?;
    public.ensure_success("medflow audit public-key")?;
    envs.push((
        "MEDFLOW_AUDIT_PUBLIC_KEYS".into(),
        format!(
            "{},{}",
            seeded.env.audit_public_key,
            public.stdout_head.trim()
        ),
    ));
    Ok(Keys { envs })
}

/// Creates an admin, lets it create a compliance account through
/// `POST /admin/accounts` and returns a session token of that account.
async fn compliance_token(seeded: &Seeded) -> anyhow::Result<String> {
    let admin_email = unique_email("bench.admin");
    seeded.env.create_admin(&admin_email).await;
    let admin = seeded.api.login_ok(&admin_email).await;
    let email = unique_email("bench.compliance");
    let response = seeded
        .api
        .command_post(
            &admin.token,
            "/admin/accounts",
            json!({"email": email, "name": "Bench Auditor", "password": PASSWORD, "role": "compliance"}),
        )
        .await;
    let status = response.status();
    anyhow::ensure!(
        status.as_u16() == 201,
        "POST /admin/accounts for a compliance account returned {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(seeded.api.login_ok(&email).await.token)
}

async fn count_events(client: &Client) -> anyhow::Result<u64> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    Ok(count as u64)
}

/// Events of synthetic aggregate `aggregate`; the same formula as `EVENTS_OF_SQL`.
fn events_of(aggregate: i64) -> i64 {
    1 + (aggregate * 3) % 5
}

/// Inserts exactly `count` events of appointments numbered from `first_aggregate` on
/// and returns the number of the next unused aggregate. The last aggregate may get
/// fewer events than `events_of` gives, so that the count comes out exact.
async fn insert_events(
    client: &Client,
    tag: &str,
    first_aggregate: i64,
    count: u64,
) -> anyhow::Result<i64> {
    if count == 0 {
        return Ok(first_aggregate);
    }
    let mut last = first_aggregate;
    let mut remaining = count as i64;
    while remaining > events_of(last) {
        remaining -= events_of(last);
        last += 1;
    }
    let last_count = remaining;

    let mut chunk_start = first_aggregate;
    while chunk_start <= last {
        let chunk_end = (chunk_start + CHUNK_AGGREGATES - 1).min(last);
        // Sequence 1 of every aggregate of the chunk before its sequence 2, and so on:
        // the trigger chains each event to its predecessor, which must exist.
        for sequence in 1..=MAX_EVENTS_PER_AGGREGATE {
            let sql = insert_sql(tag, chunk_start, chunk_end, last, last_count, sequence);
            client.execute(sql.as_str(), &[]).await?;
        }
        chunk_start = chunk_end + 1;
    }
    Ok(last + 1)
}

/// Builds one `INSERT … SELECT` of event `sequence` of the aggregates `first..=upto`
/// that have that many events. Sequence 1 is an `AppointmentBooked`. Every tenth one is
/// in the old version 1 without `consultation`, which the replay upcasts. The last event
/// of an aggregate with two or more is an `AppointmentCancelled` with a sealed reason of
/// 240 to 704 bytes, and those in between are `AppointmentRescheduled`. The values are
/// derived from `g` with `md5`, so every run writes the same shapes, and only `tag`
/// makes the aggregate ids unique.
fn insert_sql(
    tag: &str,
    first: i64,
    upto: i64,
    last: i64,
    last_count: i64,
    sequence: i64,
) -> String {
    const STAMP: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";
    let stamp = |at: &str| format!("to_char(({at}) AT TIME ZONE 'UTC', {STAMP})");
    let range = |start: &str| {
        format!(
            "format('{{\"start\":\"%s\",\"end\":\"%s\"}}', {}, {})",
            stamp(start),
            stamp(&format!("{start} + interval '30 minutes'"))
        )
    };
    let booked = format!(
        "format('{{\"AppointmentBooked\":{{\"patient\":\"%s\",\"doctor\":\"%s\",\"slot\":%s,\"doctor_time_zone\":\"%s\"%s}}}}',
                a.patient, a.doctor, {}, a.zone,
                CASE WHEN a.g % 10 = 0 THEN '' ELSE ',\"consultation\":\"video\"' END)",
        range("a.slot")
    );
    let rescheduled = format!(
        "format('{{\"AppointmentRescheduled\":{{\"from\":%s,\"to\":%s}}}}', {}, {})",
        range(&format!("a.slot + interval '{} days'", sequence - 2)),
        range(&format!("a.slot + interval '{} days'", sequence - 1)),
    );
    let base64 =
        |hex: &str| format!("translate(encode(decode({hex}, 'hex'), 'base64'), E'\\n', '')");
    let cancelled = format!(
        "format('{{\"AppointmentCancelled\":{{\"cancelled_by\":\"patient\",\"actor\":\"%s\",\"reason\":{{\"key_id\":\"%s\",\"nonce\":\"%s\",\"ciphertext\":\"%s\"}}}}}}',
                a.patient, md5('key:' || a.patient)::uuid, {}, {})",
        base64("substr(md5('nonce:' || a.id), 1, 24)"),
        base64("repeat(md5('reason:' || a.id), (15 + a.g % 30)::int)"),
    );
    let (event_type, version, payload) = if sequence == 1 {
        (
            "'AppointmentBooked'".to_owned(),
            "CASE WHEN a.g % 10 = 0 THEN '1' ELSE '2' END".to_owned(),
            booked,
        )
    } else {
        (
            format!("CASE WHEN a.n = {sequence} THEN 'AppointmentCancelled' ELSE 'AppointmentRescheduled' END"),
            "'1'".to_owned(),
            format!("CASE WHEN a.n = {sequence} THEN {cancelled} ELSE {rescheduled} END"),
        )
    };
    format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'appointment', a.id, {sequence}, {event_type}, {version}, ({payload})::json,
                format('{{\"actor_id\":\"%s\",\"actor_role\":\"patient\",\"request_id\":\"%s\"}}',
                       a.patient, md5('request:' || a.id || ':{sequence}')::uuid)::json
         FROM (SELECT g,
                      md5('{tag}:' || g)::uuid::text AS id,
                      md5('patient:' || g % {PATIENTS})::uuid::text AS patient,
                      md5('doctor:' || g % {DOCTORS})::uuid::text AS doctor,
                      (ARRAY['Europe/Berlin', 'America/New_York', 'Asia/Kolkata',
                             'Australia/Sydney', 'Europe/London'])[1 + g % 5] AS zone,
                      timestamptz '2027-01-04 08:00:00+00' + (g % 20000) * interval '30 minutes' AS slot,
                      CASE WHEN g = {last} THEN {last_count} ELSE {EVENTS_OF_SQL} END AS n
               FROM generate_series({first}::bigint, {upto}::bigint) AS g) AS a
         WHERE a.n >= {sequence}
         ORDER BY a.g"
    )
}

async fn measure(
    context: &Context<'_>,
    inserted: u64,
    insert_elapsed: Duration,
) -> anyhow::Result<Step> {
    let owner = &context.owner;
    let reader = &context.reader;
    let events = count_events(owner).await?;
    let sizes = owner
        .query_one(
            "SELECT avg(octet_length(payload::text))::float8, avg(octet_length(metadata::text))::float8
             FROM events",
            &[],
        )
        .await?;

    // A first pass reads the table into the caches; the timed passes follow.
    copy_out(reader, PLAIN_SELECT, context.pass_limit).await?;
    let copy_plain = copy_out(reader, PLAIN_SELECT, context.pass_limit).await?;
    let copy_verify_columns = copy_out(reader, VERIFY_SELECT, context.pass_limit).await?;
    let shipped = replay_passes(context, events).await?;

    eprintln!("audit replay: medflow audit seal");
    let sealed_before: i64 = owner
        .query_one(
            "SELECT coalesce(max(last_position), 0) FROM audit_checkpoints WHERE stream = 'events'",
            &[],
        )
        .await?
        .get(0);
    let seal_run = child::run(
        context.medflow,
        &["audit", "seal"],
        &context.keys.envs,
        None,
    )
    .await?;
    seal_run.ensure_success("medflow audit seal")?;
    let newly_sealed: i64 = owner
        .query_one(
            "SELECT count(*) FROM events WHERE global_position > $1",
            &[&sealed_before],
        )
        .await?
        .get(0);
    let seal = Pass::from_child(&seal_run, newly_sealed as u64);

    eprintln!("audit replay: medflow audit verify over {events} events");
    let verify_run = child::run(
        context.medflow,
        &["audit", "verify"],
        &context.keys.envs,
        None,
    )
    .await?;
    verify_run.ensure_success("medflow audit verify")?;
    let verify = Pass::from_child(&verify_run, events);

    Ok(Step {
        events,
        inserted,
        insert_elapsed,
        average_payload_bytes: sizes.get(0),
        average_metadata_bytes: sizes.get(1),
        shipped,
        copy_plain,
        copy_verify_columns,
        seal,
        seal_output: seal_run.stdout_head,
        verify,
        verify_output: verify_run.stdout_head,
    })
}

/// Runs the COPY baseline, `medflow audit replay` and `GET /audit/records` over the
/// whole table, which contains `events` rows. A pass stopped at the time limit has its
/// server-side query cancelled before the next pass starts.
async fn replay_passes(context: &Context<'_>, events: u64) -> anyhow::Result<ReplayPasses> {
    let limit = context.pass_limit;
    eprintln!("audit replay: COPY of the replay's SELECT over {events} events");
    let copy = copy_out(&context.reader, REPLAY_SELECT, limit).await?;
    check_pass("COPY", &copy, events)?;
    cancel_running_queries(&context.reader).await?;

    eprintln!("audit replay: medflow audit replay over {events} events");
    let run = child::run(
        context.medflow,
        &["audit", "replay", "--kind", "events", "--format", "jsonl"],
        &context.keys.envs,
        Some(limit),
    )
    .await?;
    if !run.killed {
        run.ensure_success("medflow audit replay")?;
    }
    let replay = Pass::from_child(&run, run.stdout_lines);
    check_pass("medflow audit replay", &replay, events)?;
    cancel_running_queries(&context.reader).await?;

    eprintln!("audit replay: GET /audit/records over {events} events");
    let replay_http = replay_over_http(context.seeded, &context.compliance_token, limit).await?;
    check_pass("GET /audit/records", &replay_http, events)?;
    cancel_running_queries(&context.reader).await?;

    Ok(ReplayPasses {
        copy,
        replay,
        replay_http,
    })
}

/// Fails if a finished pass did not deliver every event of the table.
fn check_pass(what: &str, pass: &Pass, expected: u64) -> anyhow::Result<()> {
    if pass.finished {
        anyhow::ensure!(
            pass.events == expected,
            "{what} returned {} events, but the table holds {expected}",
            pass.events
        );
    } else {
        eprintln!(
            "audit replay: {what} stopped at the time limit after {} of {expected} events",
            pass.events
        );
    }
    Ok(())
}

/// Cancels the queries of the application role that still run in the benchmark
/// database, such as the FETCH of a replay that was stopped at the time limit, and
/// waits until none runs. The services are stopped by then, so no other query of
/// this role runs there.
async fn cancel_running_queries(reader: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cancelled: i64 = reader
            .query_one(
                "SELECT count(*) FROM (
                     SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND usename = current_user
                       AND pid <> pg_backend_pid() AND state = 'active') AS running",
                &[],
            )
            .await?
            .get(0);
        if cancelled == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{cancelled} queries of the benchmark database still run 60 s after their cancellation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `COPY (select) TO STDOUT` in text format and counts rows (one newline each,
/// since text format escapes newlines inside values) and bytes. A COPY still running
/// after `limit` is cancelled.
async fn copy_out(client: &Client, select: &str, limit: Duration) -> anyhow::Result<Pass> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let stream = client
        .copy_out(format!("COPY ({select}) TO STDOUT").as_str())
        .await?;
    futures::pin_mut!(stream);
    let mut rows = 0u64;
    let mut bytes = 0u64;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.try_next()).await {
            Ok(chunk) => chunk?,
            Err(_) => {
                let elapsed = started.elapsed();
                client
                    .cancel_token()
                    .cancel_query(tokio_postgres::NoTls)
                    .await?;
                // The stream ends with the cancellation error, which is expected here.
                while let Ok(Some(_)) = stream.try_next().await {}
                return Ok(Pass {
                    events: rows,
                    bytes,
                    elapsed,
                    memory: None,
                    finished: false,
                });
            }
        };
        let Some(chunk) = chunk else {
            break;
        };
        bytes += chunk.len() as u64;
        rows += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
    }
    Ok(Pass {
        events: rows,
        bytes,
        elapsed: started.elapsed(),
        memory: None,
        finished: true,
    })
}

/// Streams `GET /audit/records?kind=events` from the query API running in this
/// process and counts its JSON lines. A response still streaming after `limit` is
/// dropped, which closes the connection.
async fn replay_over_http(seeded: &Seeded, token: &str, limit: Duration) -> anyhow::Result<Pass> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let response = seeded
        .api
        .http
        .get(format!("{}/audit/records?kind=events", seeded.api.query))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "GET /audit/records?kind=events returned {status}: {}",
        response.text().await.unwrap_or_default()
    );
    let mut body = response.bytes_stream();
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let mut finished = true;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.try_next()).await {
            Ok(chunk) => chunk?,
            Err(_) => {
                finished = false;
                break;
            }
        };
        let Some(chunk) = chunk else {
            break;
        };
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
    }
    Ok(Pass {
        events: lines,
        bytes,
        elapsed: started.elapsed(),
        memory: None,
        finished,
    })
}
