//! License documents: `POST /doctors/me/license-documents/uploads` issues a presigned
//! upload URL, and `POST /doctors/me/license-documents` attaches the uploaded object to
//! the profile. File bytes travel directly between client and object store.
//!
//! The upload URL signs the content type and the exact size, so the store rejects any
//! other upload. Before attaching, the API reads what the store actually holds and
//! checks type and size again, because the client may upload nothing or reuse a key.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::doctor::{
    DoctorCommand, DoctorError, DoctorProfile, DoctorStatus, LicenseDocument, MAX_LICENSE_DOCUMENTS,
};
use medflow_domain::values::{truncate, AccountId};
use medflow_domain::FieldError;
use medflow_infra::object_store::{
    attached_prefix, matches_signature, ObjectStore, ObjectStoreError, UploadTicket,
};
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::doctors::{collect, execute, load_profile, require_doctor};
use crate::error::doctor_problem;
use crate::state::SharedState;

/// Maximum size of one license document, in bytes (10 MiB).
pub const LICENSE_DOCUMENT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Content types accepted for license documents: scans as PDF, PNG or JPEG.
pub const LICENSE_DOCUMENT_TYPES: &[&str] = &["application/pdf", "image/png", "image/jpeg"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// `application/pdf`, `image/png` or `image/jpeg`. The upload must send exactly
    /// this Content-Type.
    pub content_type: String,
    /// Exact size of the file in bytes, 1 to 10485760 (10 MiB). The store rejects an
    /// upload of any other size.
    #[schema(value_type = u64)]
    pub size: i128,
}

impl RequestBody for UploadRequest {
    const FIELDS: &'static [Field] = &[
        Field::required("content_type", JsonKind::String),
        Field::required("size", JsonKind::Integer),
    ];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The `object_key` of an upload ticket issued to the caller, after the upload
    /// succeeded.
    pub object_key: String,
}

impl RequestBody for AttachRequest {
    const FIELDS: &'static [Field] = &[Field::required("object_key", JsonKind::String)];
}

/// Response to an attached license document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentAttached {
    /// Id of the doctor profile, which is the doctor's account id.
    pub aggregate_id: String,
    /// Sequence of the profile's last event; pass it to the query API to read your
    /// own write.
    pub sequence: u64,
    pub document_id: Uuid,
}

/// Object key prefix of a doctor's license documents. Each doctor has their own, so a
/// doctor can only attach objects uploaded with a ticket issued to them.
fn license_prefix(doctor: AccountId) -> String {
    format!("licenses/{doctor}/")
}

fn parse_content_type(field: &str, raw: &str) -> Result<String, FieldError> {
    let normalized = raw.trim().to_ascii_lowercase();
    if LICENSE_DOCUMENT_TYPES.contains(&normalized.as_str()) {
        return Ok(normalized);
    }
    Err(FieldError::new(
        field,
        format!(
            "'{}' is not an accepted document type; expected one of {}",
            truncate(raw, 60),
            LICENSE_DOCUMENT_TYPES.join(", ")
        ),
    ))
}

fn parse_size(field: &str, raw: i128) -> Result<u64, FieldError> {
    match u64::try_from(raw) {
        Ok(size) if (1..=LICENSE_DOCUMENT_MAX_BYTES).contains(&size) => Ok(size),
        _ => Err(FieldError::new(
            field,
            format!("must be 1 to {LICENSE_DOCUMENT_MAX_BYTES} bytes (10 MiB), got {raw}"),
        )),
    }
}

/// Checks that the object key has the form `licenses/<caller's id>/<32 hex digits>` that
/// [`ObjectStore::new_object_key`] produces. Anything else, including another doctor's
/// key, is rejected before the store is asked.
fn parse_object_key(doctor: AccountId, raw: &str) -> Result<String, FieldError> {
    let random_part = raw.strip_prefix(&license_prefix(doctor));
    let issued_shape = random_part.is_some_and(|random| {
        random.len() == 32
            && random
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    });
    if !issued_shape {
        return Err(FieldError::new(
            "object_key",
            "is not an upload key issued to this doctor; request one with \
             POST /doctors/me/license-documents/uploads",
        ));
    }
    Ok(raw.to_owned())
}

/// Rejects early what the aggregate would reject when attaching, so that no upload is
/// offered and no object store request is made for a document that cannot be attached.
fn check_can_attach(profile: &DoctorProfile) -> Result<(), ApiError> {
    match profile.status {
        DoctorStatus::New => return Err(doctor_problem(DoctorError::NotFound)),
        DoctorStatus::Suspended => {
            return Err(doctor_problem(DoctorError::InvalidTransition {
                action: "attach a document to",
                status: profile.status,
            }))
        }
        DoctorStatus::Draft
        | DoctorStatus::Submitted
        | DoctorStatus::Verified
        | DoctorStatus::Rejected => {}
    }
    if profile.documents.len() >= MAX_LICENSE_DOCUMENTS {
        return Err(doctor_problem(DoctorError::TooManyDocuments(
            MAX_LICENSE_DOCUMENTS,
        )));
    }
    Ok(())
}

fn store_unavailable(error: ObjectStoreError) -> ApiError {
    tracing::warn!(error = %error, "object store request failed");
    ApiError::Unavailable("the document store is unavailable; retry in a moment".to_owned())
}

#[utoipa::path(
    post,
    path = "/doctors/me/license-documents/uploads",
    tag = "doctors",
    request_body = UploadRequest,
    security(("session" = [])),
    responses(
        (status = 200, description = "Presigned upload: send the file with the given method, URL and headers before `expires_at`, then attach its `object_key`. Nothing is recorded yet", body = UploadTicket),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has not saved a profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is suspended or already contains the maximum number of documents", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Content type not accepted or size out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_upload(
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<UploadRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let mut errors = Vec::new();
    let content_type = collect(
        parse_content_type("content_type", &body.content_type),
        &mut errors,
    );
    let size = collect(parse_size("size", body.size), &mut errors);
    let (Some(content_type), Some(size)) = (content_type, size) else {
        return Err(ApiError::Validation(errors));
    };

    let profile = load_profile(&state, doctor).await?;
    check_can_attach(&profile)?;
    let object_key = ObjectStore::new_object_key(&license_prefix(doctor));
    let ticket = state
        .object_store
        .presign_upload(&object_key, &content_type, size)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(doctor_id = %doctor, "license document upload URL issued");
    Ok(HttpResponse::Ok().json(ticket))
}

#[utoipa::path(
    post,
    path = "/doctors/me/license-documents",
    tag = "doctors",
    request_body = AttachRequest,
    security(("session" = [])),
    responses(
        (status = 201, description = "Document attached. On a verified profile this also returns the profile to review", body = DocumentAttached),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has not saved a profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Object already attached, profile suspended, maximum number of documents reached, or a concurrent change", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key was not issued to this doctor, nothing was uploaded under it, or the stored object's type or size is not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The object store is unreachable; retry later", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn attach(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<AttachRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let object_key = parse_object_key(doctor, &body.object_key)?;

    let profile = load_profile(&state, doctor).await?;
    check_can_attach(&profile)?;
    // Checked here for a message naming the existing document; the aggregate rejects a
    // repeated object key too, so concurrent attaches of one key cannot both succeed.
    if let Some(existing) = profile.documents.iter().find(|document| {
        document
            .object_key
            .starts_with(&attached_prefix(&object_key))
    }) {
        return Err(ApiError::Conflict(format!(
            "this object is already attached as document {}",
            existing.document_id
        )));
    }

    let stored = state
        .object_store
        .stat(&object_key)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(|| {
            ApiError::field(
                "object_key",
                "has not been uploaded yet; upload the file with the ticket's URL and \
                 headers, then attach it",
            )
        })?;
    let content_type = stored.content_type.unwrap_or_default();
    let content_type = parse_content_type("object_key", &content_type).map_err(|_| {
        ApiError::field(
            "object_key",
            format!(
                "the stored object has content type '{}', which is not accepted; expected \
                 one of {}",
                truncate(&content_type, 60),
                LICENSE_DOCUMENT_TYPES.join(", ")
            ),
        )
    })?;
    if !(1..=LICENSE_DOCUMENT_MAX_BYTES).contains(&stored.size) {
        return Err(ApiError::field(
            "object_key",
            format!(
                "the stored object has {} bytes; a document must have 1 to \
                 {LICENSE_DOCUMENT_MAX_BYTES} bytes (10 MiB)",
                stored.size
            ),
        ));
    }

    // The declared type is only what the client claimed; the file must start like one.
    let prefix = state
        .object_store
        .read_prefix(&object_key, 16)
        .await
        .map_err(store_unavailable)?;
    if !matches_signature(&content_type, &prefix) {
        return Err(ApiError::field(
            "object_key",
            format!(
                "the stored file is not a valid {content_type} file; upload the document itself"
            ),
        ));
    }
    // The upload URL could overwrite the object until it expires, so the document is
    // moved to a key no upload URL points to before anything refers to it.
    let document_id = Uuid::new_v4();
    let attached_key = state
        .object_store
        .move_to_attached(&object_key, &document_id.to_string())
        .await
        .map_err(store_unavailable)?;

    let document = LicenseDocument {
        document_id,
        object_key: attached_key,
        content_type,
        size: stored.size,
    };
    let command = DoctorCommand::AttachLicenseDocument { document };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(
        doctor_id = %doctor,
        %document_id,
        sequence = committed.sequence,
        "license document attached"
    );
    Ok(HttpResponse::Created().json(DocumentAttached {
        aggregate_id: committed.aggregate_id,
        sequence: committed.sequence as u64,
        document_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCTOR: AccountId = AccountId(Uuid::from_u128(7));

    #[test]
    fn issued_key_is_accepted() {
        let key = ObjectStore::new_object_key(&license_prefix(DOCTOR));
        assert_eq!(parse_object_key(DOCTOR, &key).unwrap(), key);
    }

    #[test]
    fn foreign_or_crafted_keys_are_rejected() {
        let other = AccountId(Uuid::from_u128(8));
        let random = "0123456789abcdef0123456789abcdef";
        for key in [
            format!("licenses/{other}/{random}"),
            format!("licenses/{DOCTOR}/../{other}/{random}"),
            format!("licenses/{DOCTOR}/{}", random.to_uppercase()),
            format!("licenses/{DOCTOR}/{random}/x"),
            format!("licenses/{DOCTOR}/"),
            format!("/licenses/{DOCTOR}/{random}"),
        ] {
            let error = parse_object_key(DOCTOR, &key).unwrap_err();
            assert_eq!(error.field, "object_key", "{key}");
        }
    }

    #[test]
    fn size_is_bounded() {
        assert!(parse_size("size", 0).is_err());
        assert!(parse_size("size", -1).is_err());
        assert!(parse_size("size", i128::from(LICENSE_DOCUMENT_MAX_BYTES) + 1).is_err());
        assert_eq!(
            parse_size("size", i128::from(LICENSE_DOCUMENT_MAX_BYTES)).unwrap(),
            LICENSE_DOCUMENT_MAX_BYTES
        );
    }

    #[test]
    fn content_type_is_normalized() {
        assert_eq!(
            parse_content_type("content_type", " Application/PDF ").unwrap(),
            "application/pdf"
        );
        let error = parse_content_type("content_type", "text/plain").unwrap_err();
        assert!(error.detail.contains("'text/plain'"), "{}", error.detail);
    }
}
