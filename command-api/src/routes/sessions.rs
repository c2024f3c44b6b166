//! Login and logout. Unknown e-mail and wrong password get the same response after the
//! same amount of work (one scrypt evaluation); every attempt is an audit entry.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use medflow_domain::account::AccountStatus;
use medflow_domain::values::{AccountId, EmailAddress, PASSWORD_MAX_LEN};
use medflow_domain::FieldError;
use medflow_infra::audit::{AuditEntry, Outcome};
use medflow_infra::crypto::CryptoError;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::{request_id, ApiError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{client_address, record_aggregate};
use crate::error::from_account_error;
use crate::state::SharedState;

const INVALID_CREDENTIALS: &str = "invalid e-mail address or password";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl RequestBody for LoginRequest {
    const FIELDS: &'static [Field] = &[
        Field::sensitive("email", JsonKind::String),
        Field::sensitive("password", JsonKind::String),
    ];
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for the `Authorization` header. Shown once; only its hash is stored.
    pub token: String,
    pub session_id: String,
    pub account_id: String,
    pub role: String,
    /// Absolute expiry; the session also ends after the idle timeout.
    pub expires_at: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/sessions",
    tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 201, description = "Logged in; a new token for every login", body = LoginResponse),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Invalid e-mail address or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is suspended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or invalid", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts for this account or address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    request: HttpRequest,
    state: web::Data<SharedState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse("email", &body.email)
        .map_err(|error| ApiError::Validation(vec![error]))?;
    let password_length = body.password.chars().count();
    if password_length == 0 || password_length > PASSWORD_MAX_LEN {
        return Err(ApiError::Validation(vec![FieldError::new(
            "password",
            format!("must be 1 to {PASSWORD_MAX_LEN} characters, got {password_length}"),
        )]));
    }
    let email_index = state.index.email(&email);
    let account_id = AccountId::for_email(&email_index);
    let address = client_address(&request);
    let attempt = |actor: Option<AccountId>, outcome| AuditEntry {
        actor_id: actor,
        actor_role: None,
        action: "session.login".into(),
        target_type: Some("account".into()),
        target_id: actor.map(|id| id.to_string()),
        outcome,
        request_id: request_id::current(),
        client_address_index: Some(state.index.client_address(address)),
        patient_id: None,
        client_address: None,
    };

    if let Err(wait) = state.login_limiter.check(&email_index, address) {
        let mut entry = attempt(None, Outcome::Failure);
        entry.action = "session.login.rate_limited".into();
        state
            .audit
            .record(&entry)
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::TooManyRequests {
            // Rounded up, so a client that waits exactly this long is let through.
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }

    let (account, _) = state
        .accounts
        .load(&account_id.to_string())
        .await
        .map_err(from_account_error)?;
    let stored_hash = match (&account.id, &account.password_hash) {
        (Some(_), Some(sealed)) => match state
            .keys
            .open_text(account_id.0, "password_hash", sealed)
            .await
        {
            Ok(hash) => Some(hash),
            // An erased person's credentials are gone with their data key; the login
            // then fails exactly like one for an unknown address.
            Err(CryptoError::DestroyedDataKey(_)) => None,
            Err(error) => return Err(ApiError::internal(error)),
        },
        _ => None,
    };
    let known = stored_hash.is_some().then_some(account_id);
    let verified = state
        .hasher
        .verify(&body.password, stored_hash)
        .await
        .map_err(ApiError::internal)?;
    if !verified {
        state
            .audit
            .record(&attempt(known, Outcome::Failure))
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::Unauthorized(INVALID_CREDENTIALS));
    }
    record_aggregate(&request, &account_id.to_string());
    let role = account
        .role
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("registered account without role")))?;
    if account.status == AccountStatus::Suspended {
        let mut entry = attempt(known, Outcome::Failure);
        entry.action = "session.login.suspended".into();
        state
            .audit
            .record(&entry)
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::Forbidden(
            "this account is suspended; contact an administrator".to_owned(),
        ));
    }

    let session = state
        .sessions
        .create(account_id, role)
        .await
        .map_err(ApiError::internal)?;
    // A suspension that committed after the status check above revokes sessions only
    // after its commit, and may have run before this session existed. Checking again
    // now closes that window: either the suspension's revocation saw this session, or
    // this check reads the suspension.
    let (latest, _) = state
        .accounts
        .load(&account_id.to_string())
        .await
        .map_err(from_account_error)?;
    if latest.status != AccountStatus::Active {
        state
            .sessions
            .revoke(session.session_id)
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::Forbidden(
            "this account is suspended; contact an administrator".to_owned(),
        ));
    }
    let mut entry = attempt(known, Outcome::Success);
    entry.actor_role = Some(role);
    state
        .audit
        .record(&entry)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(account_id = %account_id, session_id = %session.session_id, "login succeeded");
    Ok(HttpResponse::Created().json(LoginResponse {
        token: session.token,
        session_id: session.session_id.to_string(),
        account_id: account_id.to_string(),
        role: role.as_str().to_owned(),
        expires_at: session.expires_at,
    }))
}

#[utoipa::path(
    delete,
    path = "/sessions/current",
    tag = "sessions",
    security(("session" = [])),
    responses(
        (status = 204, description = "This session is revoked"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(
    auth: Authenticated,
    state: web::Data<SharedState>,
) -> Result<HttpResponse, ApiError> {
    state
        .sessions
        .revoke(auth.session.session_id)
        .await
        .map_err(ApiError::internal)?;
    record_logout(&state, &auth, "session.logout").await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    delete,
    path = "/sessions",
    tag = "sessions",
    security(("session" = [])),
    responses(
        (status = 204, description = "Every session of the caller's account is revoked"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout_everywhere(
    auth: Authenticated,
    state: web::Data<SharedState>,
) -> Result<HttpResponse, ApiError> {
    let revoked = state
        .sessions
        .revoke_all(auth.session.account_id)
        .await
        .map_err(ApiError::internal)?;
    record_logout(&state, &auth, "session.logout_everywhere").await?;
    tracing::info!(account_id = %auth.session.account_id, revoked_sessions = revoked, "logged out everywhere");
    Ok(HttpResponse::NoContent().finish())
}

async fn record_logout(
    state: &SharedState,
    auth: &Authenticated,
    action: &'static str,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        actor_id: Some(auth.session.account_id),
        actor_role: Some(auth.session.role),
        action: action.into(),
        target_type: Some("session".into()),
        target_id: Some(auth.session.session_id.to_string()),
        outcome: Outcome::Success,
        request_id: request_id::current(),
        client_address_index: None,
        patient_id: None,
        client_address: None,
    };
    state.audit.record(&entry).await.map_err(ApiError::internal)
}
