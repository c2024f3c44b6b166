//! `POST /accounts`: self-registration of patients and doctors.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::account::{AccountCommand, AccountStatus, RegisterAccount};
use medflow_domain::values::{AccountId, EmailAddress, Password, PersonName, Role};
use medflow_domain::FieldError;
use medflow_infra::event_store::{Committed, EventMetadata};
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{metadata, record_aggregate, CommandAccepted};
use crate::error::from_account_error;
use crate::state::{AppState, SharedState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// `patient` or `doctor`. Admins are created by other admins or the operator CLI.
    pub role: String,
    pub email: String,
    /// 12 to 128 characters, hard to guess (checked with zxcvbn).
    pub password: String,
    /// Display name, 1 to 100 characters.
    pub name: String,
}

impl RequestBody for RegistrationRequest {
    const FIELDS: &'static [Field] = &[
        Field::required("role", JsonKind::String),
        Field::sensitive("email", JsonKind::String),
        Field::sensitive("password", JsonKind::String),
        Field::sensitive("name", JsonKind::String),
    ];
}

/// A registration whose every field passed validation.
pub struct ValidRegistration {
    pub role: Role,
    pub email: EmailAddress,
    pub name: PersonName,
    pub password: Password,
}

/// Validates every field and reports all failures at once.
pub fn validate(
    role: Result<Role, FieldError>,
    email: &str,
    name: &str,
    password: &str,
) -> Result<ValidRegistration, ApiError> {
    let email = EmailAddress::parse("email", email);
    let name = PersonName::parse("name", name);
    let personal: Vec<&str> = [
        email.as_ref().ok().map(EmailAddress::as_str),
        name.as_ref().ok().map(PersonName::as_str),
    ]
    .into_iter()
    .flatten()
    .collect();
    let password = Password::parse("password", password, &personal);
    match (role, email, name, password) {
        (Ok(role), Ok(email), Ok(name), Ok(password)) => Ok(ValidRegistration {
            role,
            email,
            name,
            password,
        }),
        (role, email, name, password) => Err(ApiError::Validation(
            [role.err(), email.err(), name.err(), password.err()]
                .into_iter()
                .flatten()
                .collect(),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/accounts",
    tag = "accounts",
    request_body = RegistrationRequest,
    responses(
        (status = 201, description = "Account registered", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An account with this e-mail address exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or invalid; the problem names it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    request: HttpRequest,
    state: web::Data<SharedState>,
    body: JsonBody<RegistrationRequest>,
) -> Result<HttpResponse, ApiError> {
    let role = match Role::parse("role", &body.role) {
        Ok(staff @ (Role::Admin | Role::Compliance)) => Err(FieldError::new(
            "role",
            format!("'{staff}' cannot self-register; expected patient or doctor"),
        )),
        other => other,
    };
    let registration = validate(role, &body.email, &body.name, &body.password)?;
    let committed = register_account(&state, registration, None, metadata(None)).await?;
    record_aggregate(&request, &committed.aggregate_id);
    tracing::info!(account_id = %committed.aggregate_id, "account registered");
    Ok(HttpResponse::Created().json(CommandAccepted::from(committed)))
}

/// Hashes, seals and appends a registration. Shared with admin creation and the
/// operator CLI's first-admin bootstrap.
pub async fn register_account(
    state: &AppState,
    registration: ValidRegistration,
    registered_by: Option<AccountId>,
    metadata: EventMetadata,
) -> Result<Committed, ApiError> {
    let email_index = state.index.email(&registration.email);
    let account_id = AccountId::for_email(&email_index);

    // Checked first so a duplicate costs no password hash; the event store's
    // optimistic lock still decides between concurrent registrations.
    let (existing, _) = state
        .accounts
        .load(&account_id.to_string())
        .await
        .map_err(from_account_error)?;
    if existing.status != AccountStatus::Unregistered {
        return Err(ApiError::Conflict(
            "an account with this e-mail address already exists".to_owned(),
        ));
    }

    let password_hash = state
        .hasher
        .hash(&registration.password)
        .await
        .map_err(ApiError::internal)?;
    let subject = account_id.0;
    let seal = |field: &'static str, value: Vec<u8>| {
        let keys = &state.keys;
        async move {
            keys.seal(subject, field, &value)
                .await
                .map_err(ApiError::internal)
        }
    };
    let command = RegisterAccount {
        account_id,
        role: registration.role,
        email_index,
        email: seal("email", registration.email.as_str().as_bytes().to_vec()).await?,
        name: seal("name", registration.name.as_str().as_bytes().to_vec()).await?,
        password_hash: seal("password_hash", password_hash.into_bytes()).await?,
        registered_by,
    };
    state
        .accounts
        .execute(
            &account_id.to_string(),
            AccountCommand::Register(command),
            metadata,
        )
        .await
        .map_err(|error| match error {
            // Another registration of the same address committed between our check
            // and our append.
            cqrs_es::AggregateError::AggregateConflict => {
                ApiError::Conflict("an account with this e-mail address already exists".to_owned())
            }
            other => from_account_error(other),
        })
}
