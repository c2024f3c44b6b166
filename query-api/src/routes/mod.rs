//! HTTP routes, one module per resource.

pub mod accounts;
pub mod admin_doctors;
pub mod appointment_views;
pub mod appointments;
pub mod audit;
pub mod bookings;
pub mod doctor_views;
pub mod doctors;
pub mod notifications;

use actix_web::web;
use chrono::{DateTime, Utc};
use medflow_domain::values::Role;
use medflow_domain::values::SealedValue;
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::crypto::CryptoError;
use medflow_infra::web::{access, resource, ApiError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Routes that serve no personal data of patients, so requests to them leave no access
/// entry (see `medflow_infra::web::access`). Every other route is recorded; a new route
/// is recorded unless it is added here. An item ending in `/` covers every route under it.
pub const PUBLIC_ROUTES: &[&str] = &[
    "/doctors",
    "/doctors/{doctor_id}/slots",
    "/health/",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/",
];

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/me", "GET").route(web::get().to(accounts::me)))
        .service(resource("/admin/accounts", "GET").route(web::get().to(accounts::list_accounts)))
        .service(resource("/doctors", "GET").route(web::get().to(doctors::directory)))
        .service(resource("/doctors/me/profile", "GET").route(web::get().to(doctors::own_profile)))
        .service(resource("/doctors/{doctor_id}/slots", "GET").route(web::get().to(doctors::slots)))
        .service(
            resource("/admin/doctors/verification-queue", "GET")
                .route(web::get().to(admin_doctors::verification_queue)),
        )
        .service(
            resource(
                "/admin/doctors/{doctor_id}/license-documents/{document_id}/download-url",
                "GET",
            )
            .route(web::get().to(admin_doctors::document_download_url)),
        )
        .service(
            resource("/appointments/{appointment_id}", "GET")
                .route(web::get().to(appointments::appointment)),
        )
        .service(
            resource("/patients/me/appointments", "GET")
                .route(web::get().to(appointments::patient_appointments)),
        )
        .service(
            resource("/doctors/me/schedule", "GET")
                .route(web::get().to(appointments::doctor_schedule)),
        )
        .service(
            resource("/admin/appointments/overview", "GET")
                .route(web::get().to(appointments::admin_overview)),
        )
        .service(resource("/audit/records", "GET").route(web::get().to(audit::records)))
        .service(resource("/audit/fhir", "GET").route(web::get().to(audit::fhir)))
        .service(resource("/admin/audit/verify", "GET").route(web::get().to(audit::verify)))
        .service(resource("/notifications", "GET").route(web::get().to(notifications::list)))
        .service(
            resource("/notifications/stream", "GET").route(web::get().to(notifications::stream)),
        );
}

/// An account as the directory shows it, personal data opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub account_id: Uuid,
    pub role: String,
    /// `active` or `suspended`.
    pub status: String,
    /// `null` once the person's data key has been destroyed.
    pub email: Option<String>,
    pub name: Option<String>,
    /// Reason for the current suspension; absent while the account is active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns selected for an [`AccountView`].
pub const ACCOUNT_COLUMNS: &str =
    "account_id, role, status, email, name, registered_at, updated_at, suspension_reason";

impl AccountView {
    pub async fn from_row(row: &tokio_postgres::Row, keys: &KeyRing) -> Result<Self, ApiError> {
        let account_id: Uuid = row.get(0);
        if row.get::<_, &str>(1) == Role::Patient.as_str() {
            access::patient(account_id);
        }
        let email: serde_json::Value = row.get(3);
        let name: serde_json::Value = row.get(4);
        Ok(Self {
            account_id,
            role: row.get(1),
            status: row.get(2),
            email: open(keys, account_id, "email", email).await?,
            name: open(keys, account_id, "name", name).await?,
            suspension_reason: match row.get::<_, Option<serde_json::Value>>(7) {
                Some(sealed) => open(keys, account_id, "suspension_reason", sealed).await?,
                None => None,
            },
            registered_at: row.get(5),
            updated_at: row.get(6),
        })
    }
}

pub(crate) async fn open(
    keys: &KeyRing,
    subject: Uuid,
    field: &str,
    sealed: serde_json::Value,
) -> Result<Option<String>, ApiError> {
    let sealed: SealedValue = serde_json::from_value(sealed).map_err(ApiError::internal)?;
    match keys.open_text(subject, field, &sealed).await {
        Ok(text) => Ok(Some(text)),
        Err(CryptoError::DestroyedDataKey(_)) => Ok(None),
        Err(error) => Err(ApiError::internal(error)),
    }
}
