//! Admin views of doctors: the verification queue and license document downloads.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::web::access;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::doctor_views::{DoctorRow, DOCTOR_COLUMNS};
use super::doctors::OwnProfile;
use crate::cursor;
use crate::state::SharedState;

const QUEUE_PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// Cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationQueue {
    /// Submitted profiles, longest waiting first, at most 50 per page.
    pub doctors: Vec<OwnProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/doctors/verification-queue",
    tag = "admin",
    params(QueueParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Doctors waiting for verification", body = VerificationQueue),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verification_queue(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<QueueParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let after = match params.cursor.as_deref() {
        None => None,
        Some(raw) => Some(cursor::decode(raw).ok_or_else(|| {
            FieldError::new(
                "cursor",
                format!("'{}' is not a cursor from this API", truncate(raw, 40)),
            )
        })?),
    };
    let (after_at, after_id) = after.unzip();
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let rows = client
        .query(
            &format!(
                "SELECT {DOCTOR_COLUMNS} FROM doctor_profiles
                 WHERE status = 'submitted'
                   AND ($1::timestamptz IS NULL OR (submitted_at, doctor_id) > ($1, $2))
                 ORDER BY submitted_at, doctor_id LIMIT $3"
            ),
            &[&after_at, &after_id, &(QUEUE_PAGE_SIZE + 1)],
        )
        .await
        .map_err(ApiError::internal)?;
    let has_more = rows.len() as i64 > QUEUE_PAGE_SIZE;
    let mut doctors = Vec::new();
    let mut last = None;
    for row in rows.iter().take(QUEUE_PAGE_SIZE as usize) {
        let doctor = DoctorRow::from_row(row)?;
        last = doctor.submitted_at.map(|at| (at, doctor.doctor_id));
        doctors.push(OwnProfile::build(&doctor, &state.keys).await?);
    }
    let next_cursor = match (has_more, last) {
        (true, Some((at, id))) => Some(cursor::encode(at, id)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(VerificationQueue {
        doctors,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadUrl {
    /// Presigned GET URL of the document in the object store.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/admin/doctors/{doctor_id}/license-documents/{document_id}/download-url",
    tag = "admin",
    params(
        ("doctor_id" = Uuid, Path, description = "Doctor whose document to read"),
        ("document_id" = Uuid, Path, description = "Attached license document"),
    ),
    security(("session" = [])),
    responses(
        (status = 200, description = "A short-lived download URL; the read is audited", body = DownloadUrl),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such doctor or document", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn document_download_url(
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let (raw_doctor, raw_document) = path.into_inner();
    let parse = |field: &str, raw: &str| {
        Uuid::parse_str(raw).map_err(|_| {
            FieldError::new(
                field,
                format!("'{}' is not a valid UUID", truncate(raw, 40)),
            )
        })
    };
    let doctor_id = parse("doctor_id", &raw_doctor)?;
    let document_id = parse("document_id", &raw_document)?;
    access::target("license_document", document_id);

    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            &format!("SELECT {DOCTOR_COLUMNS} FROM doctor_profiles WHERE doctor_id = $1"),
            &[&doctor_id],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound(format!("doctor {doctor_id} not found")))?;
    let doctor = DoctorRow::from_row(&row)?;
    let document = doctor
        .documents
        .iter()
        .find(|document| document.document_id == document_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "document {document_id} is not attached to doctor {doctor_id}"
            ))
        })?;
    let (url, expires_at) = state
        .object_store
        .presign_download(&document.object_key)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(DownloadUrl { url, expires_at }))
}
