//! Compliance routes: the audit trail replayed as JSON lines or CSV, exported as FHIR
//! AuditEvent resources, and verified against its signed checkpoints. Replays stream
//! from server-side cursors on a connection of their own, so any size takes constant
//! memory.

use std::sync::Arc;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use futures::stream::{self, Stream};
use futures::StreamExt;
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::audit::fhir::{FhirFormat, FhirWriter};
use medflow_infra::audit::records::AuditRecord;
use medflow_infra::audit::replay::{self, Format, Replay, ReplayFilter};
use medflow_infra::audit::verify::{self, StreamReport};
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::web::access;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::query_params::optional_instant;
use crate::state::SharedState;

/// Roles that may read the audit trail.
const AUDITORS: &[Role] = &[Role::Compliance, Role::Admin];
const MAX_TYPE_LEN: usize = 64;
const MAX_ID_LEN: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// Only records at or after this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Only records before this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Events of this aggregate type (`account`, `doctor`, `appointment`), and access
    /// entries whose target has this type.
    pub aggregate_type: Option<String>,
    /// Events of this aggregate, and access entries with this target id.
    pub aggregate_id: Option<String>,
    /// Only what this account did.
    #[param(value_type = Option<Uuid>)]
    pub actor_id: Option<String>,
    /// Only what touched this patient: changes to their aggregates and every access
    /// to their data, allowed or denied.
    #[param(value_type = Option<Uuid>)]
    pub patient_id: Option<String>,
    /// `all` (default), `events` (changes only) or `access` (access entries only).
    pub kind: Option<String>,
    /// Replay: `jsonl` (default) or `csv`. FHIR export: `ndjson` (default) or `bundle`.
    pub format: Option<String>,
}

impl ReplayParams {
    fn filter(&self, errors: &mut Vec<FieldError>) -> ReplayFilter {
        let uuid = |errors: &mut Vec<FieldError>, field: &str, raw: Option<&str>| {
            let raw = raw?;
            Uuid::parse_str(raw)
                .map_err(|_| {
                    errors.push(FieldError::new(
                        field,
                        format!("'{}' is not a valid UUID", truncate(raw, 40)),
                    ))
                })
                .ok()
        };
        let bounded = |errors: &mut Vec<FieldError>, field: &str, raw: Option<&str>, max| {
            let raw = raw?;
            if raw.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "'{}' contains a control character",
                        truncate(&raw.escape_default().to_string(), 40)
                    ),
                ));
                return None;
            }
            if raw.is_empty() || raw.chars().count() > max {
                errors.push(FieldError::new(
                    field,
                    format!("'{}' must be 1 to {max} characters", truncate(raw, 40)),
                ));
                return None;
            }
            Some(raw.to_owned())
        };
        let (include_events, include_access) = match self.kind.as_deref() {
            None | Some("all") => (true, true),
            Some("events") => (true, false),
            Some("access") => (false, true),
            Some(raw) => {
                errors.push(FieldError::new(
                    "kind",
                    format!(
                        "'{}' is not a record kind; expected all, events or access",
                        truncate(raw, 40)
                    ),
                ));
                (true, true)
            }
        };
        if let Some(raw) = self.aggregate_type.as_deref() {
            if !replay::RECORD_TYPES.contains(&raw) {
                errors.push(FieldError::new(
                    "aggregate_type",
                    format!(
                        "'{}' is not a record type; expected one of {}",
                        truncate(&raw.escape_default().to_string(), 40),
                        replay::RECORD_TYPES.join(", ")
                    ),
                ));
            }
        }
        let filter = ReplayFilter {
            from: optional_instant(errors, "from", self.from.as_deref()),
            to: optional_instant(errors, "to", self.to.as_deref()),
            aggregate_type: bounded(
                errors,
                "aggregate_type",
                self.aggregate_type.as_deref(),
                MAX_TYPE_LEN,
            ),
            aggregate_id: bounded(
                errors,
                "aggregate_id",
                self.aggregate_id.as_deref(),
                MAX_ID_LEN,
            ),
            actor_id: uuid(errors, "actor_id", self.actor_id.as_deref()),
            patient_id: uuid(errors, "patient_id", self.patient_id.as_deref()),
            include_events,
            include_access,
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if to <= from {
                errors.push(FieldError::new(
                    "to",
                    format!(
                        "'{}' must be later than from ('{}')",
                        truncate(self.to.as_deref().unwrap_or_default(), 40),
                        truncate(self.from.as_deref().unwrap_or_default(), 40)
                    ),
                ));
            }
        }
        if let Some(aggregate_id) = filter.aggregate_id.as_deref() {
            if let Some(problem) =
                replay::aggregate_id_problem(filter.aggregate_type.as_deref(), aggregate_id)
            {
                errors.push(FieldError::new("aggregate_id", problem));
            }
        }
        filter
    }
}

/// Output of one replay, in the format the caller asked for.
enum Encoder {
    Records(Format),
    Fhir(FhirWriter),
}

impl Encoder {
    fn header(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Encoder::Records(format) => format.header(),
            Encoder::Fhir(writer) => Ok(writer.header()),
        }
    }

    fn encode(&mut self, batch: &[AuditRecord]) -> anyhow::Result<Vec<u8>> {
        match self {
            Encoder::Records(format) => format.encode(batch),
            Encoder::Fhir(writer) => writer.encode(batch),
        }
    }

    fn footer(&self) -> Vec<u8> {
        match self {
            Encoder::Records(_) => Vec::new(),
            Encoder::Fhir(writer) => writer.footer(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/audit/records",
    tag = "audit",
    params(ReplayParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Events and access entries in order, streamed as JSON lines (`application/x-ndjson`) or CSV (`text/csv`)", content_type = "application/x-ndjson"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not compliance staff or an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn records(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<ReplayParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(AUDITORS)?;
    let mut errors = Vec::new();
    let filter = params.filter(&mut errors);
    let format = match params.format.as_deref() {
        None => Format::JsonLines,
        Some(raw) => Format::parse(raw).unwrap_or_else(|| {
            errors.push(FieldError::new(
                "format",
                format!(
                    "'{}' is not a replay format; expected jsonl or csv",
                    truncate(raw, 40)
                ),
            ));
            Format::JsonLines
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    stream_response(
        &state,
        filter,
        format.content_type(),
        Encoder::Records(format),
    )
    .await
}

#[utoipa::path(
    get,
    path = "/audit/fhir",
    tag = "audit",
    params(ReplayParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The same selection as FHIR R4 AuditEvent resources: NDJSON (`application/fhir+ndjson`) or a collection Bundle (`application/fhir+json`)", content_type = "application/fhir+ndjson"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not compliance staff or an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fhir(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<ReplayParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(AUDITORS)?;
    let mut errors = Vec::new();
    let filter = params.filter(&mut errors);
    let format = match params.format.as_deref() {
        None => FhirFormat::Ndjson,
        Some(raw) => FhirFormat::parse(raw).unwrap_or_else(|| {
            errors.push(FieldError::new(
                "format",
                format!(
                    "'{}' is not a FHIR export format; expected ndjson or bundle",
                    truncate(raw, 40)
                ),
            ));
            FhirFormat::Ndjson
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let writer = FhirWriter::new(format);
    stream_response(&state, filter, format.content_type(), Encoder::Fhir(writer)).await
}

/// Starts the replay (so that a database failure is still a proper error response) and
/// streams the rest.
async fn stream_response(
    state: &SharedState,
    filter: ReplayFilter,
    content_type: &'static str,
    encoder: Encoder,
) -> Result<HttpResponse, ApiError> {
    access::target("audit_trail", "replay");
    if let Some(patient) = filter.patient_id {
        access::patient(patient);
    }
    // The connection leaves the pool: if the client goes away mid-stream, dropping it
    // closes the connection instead of returning one with an open transaction.
    let client =
        deadpool_postgres::Object::take(state.pool.get().await.map_err(ApiError::internal)?);
    let replay = Replay::start(&client, &filter)
        .await
        .map_err(ApiError::internal)?;
    let header = encoder.header().map_err(ApiError::internal)?;
    let body = replay_stream(client, replay, encoder, Arc::clone(&state.keys));
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .streaming(stream::once(async move { Ok(Bytes::from(header)) }).chain(body)))
}

/// Encoded chunks waiting for the HTTP response, at most; a chunk is one batch.
const CHUNKS_IN_FLIGHT: usize = 1;

type Chunk = Result<Bytes, actix_web::Error>;

/// Streams the replay's chunks, which a task on the worker produces ahead of the
/// response, so PostgreSQL reads the next batch while the last one is being sent.
fn replay_stream(
    client: deadpool_postgres::ClientWrapper,
    replay: Replay,
    encoder: Encoder,
    keys: Arc<KeyRing>,
) -> impl Stream<Item = Chunk> {
    let (chunks, received) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    actix_web::rt::spawn(produce_chunks(client, replay, encoder, keys, chunks));
    stream::unfold(received, |mut received| async move {
        let chunk = received.recv().await?;
        Some((chunk, received))
    })
}

/// Fetches, encodes and sends the replay's batches until the last one or until the
/// response is dropped. Dropping `client` then closes its connection, which ends the
/// replay's transaction. A batch is encoded on a blocking thread while the worker
/// fetches and decodes the next one.
async fn produce_chunks(
    client: deadpool_postgres::ClientWrapper,
    mut replay: Replay,
    encoder: Encoder,
    keys: Arc<KeyRing>,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
) {
    let failed = || {
        Err(actix_web::error::ErrorInternalServerError(
            "audit replay failed",
        ))
    };
    let mut encoder = Some(encoder);
    let mut next = replay.next_batch(&client).await;
    loop {
        let mut batch = match next {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "audit replay failed mid-stream"
                );
                let _ = chunks.send(failed()).await;
                return;
            }
        };
        let Some(mut current) = encoder.take() else {
            return;
        };
        if batch.is_empty() {
            if let Err(error) = replay.finish(&client).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "closing the audit replay failed"
                );
            }
            let _ = chunks.send(Ok(Bytes::from(current.footer()))).await;
            return;
        }
        replay::open_client_addresses(&keys, &mut batch).await;
        let encode_and_send = async {
            let encoded = web::block(move || {
                let bytes = current.encode(&batch);
                (current, bytes)
            })
            .await;
            let bytes = match encoded {
                Ok((returned, Ok(bytes))) => {
                    encoder = Some(returned);
                    Bytes::from(bytes)
                }
                Ok((_, Err(error))) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "encoding the audit replay failed"
                    );
                    let _ = chunks.send(failed()).await;
                    return false;
                }
                Err(error) => {
                    tracing::error!(
                        error = %error,
                        "the audit replay's encoding thread failed"
                    );
                    let _ = chunks.send(failed()).await;
                    return false;
                }
            };
            // A send error means that the client went away.
            chunks.send(Ok(bytes)).await.is_ok()
        };
        let (sent, fetched) =
            futures::future::join(encode_and_send, replay.next_batch(&client)).await;
        if !sent {
            return;
        }
        next = fetched;
    }
}

/// The verify route takes no query parameters; any given is rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    /// True when every stream is intact.
    pub intact: bool,
    #[schema(value_type = Vec<Object>)]
    pub streams: Vec<StreamReport>,
}

#[utoipa::path(
    get,
    path = "/admin/audit/verify",
    tag = "audit",
    security(("session" = [])),
    responses(
        (status = 200, description = "Result of recomputing the hash chain and checking every checkpoint signature; `intact` is false when a row does not match", body = VerifyReport),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not compliance staff or an admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No public key is configured to check checkpoint signatures (MEDFLOW_AUDIT_PUBLIC_KEYS)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    auth: Authenticated,
    state: web::Data<SharedState>,
    _params: web::Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(AUDITORS)?;
    access::target("audit_trail", "verify");
    if state.audit_keys.is_empty() {
        return Err(ApiError::Unavailable(
            "no public key is configured to check checkpoint signatures; set MEDFLOW_AUDIT_PUBLIC_KEYS".to_owned(),
        ));
    }
    let mut client =
        deadpool_postgres::Object::take(state.pool.get().await.map_err(ApiError::internal)?);
    let streams = verify::verify_all(&mut client, &state.audit_keys, verify::MAX_UNSEALED_AGE)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(VerifyReport {
        intact: streams.iter().all(StreamReport::is_intact),
        streams,
    }))
}
