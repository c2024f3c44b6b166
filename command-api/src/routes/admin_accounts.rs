//! Admin actions on accounts: creating admins, suspending and reinstating accounts.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::account::AccountCommand;
use medflow_domain::values::{AccountId, Role};
use medflow_domain::FieldError;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::accounts::{register_account, validate};
use super::{metadata, record_aggregate, CommandAccepted};
use crate::error::from_account_error;
use crate::state::SharedState;

/// Maximum length of a suspension reason, in characters.
pub const REASON_MAX_LEN: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminRequest {
    pub email: String,
    pub password: String,
    pub name: String,
    /// `admin` (the default) or `compliance`: compliance staff replay and verify the
    /// audit trail and do nothing else.
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspensionRequest {
    /// Reason for the suspension, 1 to 500 characters. Stored encrypted.
    pub reason: String,
}

impl RequestBody for CreateAdminRequest {
    const FIELDS: &'static [Field] = &[
        Field::sensitive("email", JsonKind::String),
        Field::sensitive("password", JsonKind::String),
        Field::sensitive("name", JsonKind::String),
        Field {
            required: false,
            ..Field::required("role", JsonKind::String)
        },
    ];
}

impl RequestBody for SuspensionRequest {
    const FIELDS: &'static [Field] = &[Field::sensitive("reason", JsonKind::String)];
}

#[utoipa::path(
    post,
    path = "/admin/accounts",
    tag = "admin",
    request_body = CreateAdminRequest,
    security(("session" = [])),
    responses(
        (status = 201, description = "Admin account created", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An account with this e-mail address exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_admin(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<CreateAdminRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let role = match body.role.as_deref().map(|raw| Role::parse("role", raw)) {
        None => Ok(Role::Admin),
        Some(Ok(staff @ (Role::Admin | Role::Compliance))) => Ok(staff),
        Some(Ok(other)) => Err(FieldError::new(
            "role",
            format!("'{other}' accounts register themselves; expected admin or compliance"),
        )),
        Some(Err(error)) => Err(error),
    };
    let role_name = role.as_ref().map_or("invalid", |role| role.as_str());
    let registration = validate(role, &body.email, &body.name, &body.password)?;
    let committed = register_account(
        &state,
        registration,
        Some(auth.session.account_id),
        metadata(Some(&auth.session)),
    )
    .await?;
    record_aggregate(&request, &committed.aggregate_id);
    tracing::info!(account_id = %committed.aggregate_id, role = role_name, "staff account created");
    Ok(HttpResponse::Created().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/admin/accounts/{account_id}/suspension",
    tag = "admin",
    request_body = SuspensionRequest,
    params(("account_id" = String, Path, description = "Account to suspend")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Account suspended and its sessions revoked", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid account id or reason", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin, or targets their own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Account already suspended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn suspend(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    body: JsonBody<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let account_id = AccountId::parse("account_id", &path)?;
    record_aggregate(&request, &account_id.to_string());
    let reason = body.reason.trim();
    let length = reason.chars().count();
    if length == 0 || length > REASON_MAX_LEN {
        return Err(ApiError::Validation(vec![FieldError::new(
            "reason",
            format!("must be 1 to {REASON_MAX_LEN} characters, got {length}"),
        )]));
    }
    let (existing, _) = state
        .accounts
        .load(&account_id.to_string())
        .await
        .map_err(from_account_error)?;
    if existing.id.is_none() {
        return Err(ApiError::NotFound(format!(
            "account {account_id} not found"
        )));
    }
    let sealed = state
        .keys
        .seal(account_id.0, "suspension_reason", reason.as_bytes())
        .await
        .map_err(ApiError::internal)?;
    let command = AccountCommand::Suspend {
        reason: sealed,
        by: auth.session.account_id,
    };
    let committed = state
        .accounts
        .execute(
            &account_id.to_string(),
            command,
            metadata(Some(&auth.session)),
        )
        .await
        .map_err(from_account_error)?;
    let revoked = state
        .sessions
        .revoke_all(account_id)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(account_id = %account_id, revoked_sessions = revoked, "account suspended");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    delete,
    path = "/admin/accounts/{account_id}/suspension",
    tag = "admin",
    params(("account_id" = String, Path, description = "Account to reinstate")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Account reinstated", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid account id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Account is not suspended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reinstate(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let account_id = AccountId::parse("account_id", &path)?;
    record_aggregate(&request, &account_id.to_string());
    let command = AccountCommand::Reinstate {
        by: auth.session.account_id,
    };
    let committed = state
        .accounts
        .execute(
            &account_id.to_string(),
            command,
            metadata(Some(&auth.session)),
        )
        .await
        .map_err(from_account_error)?;
    tracing::info!(account_id = %account_id, "account reinstated");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}
