//! HTTP routes, one module per resource.

pub mod accounts;
pub mod admin_accounts;
pub mod admin_doctors;
pub mod appointment_lifecycle;
pub mod appointments;
pub mod doctor_availability;
pub mod doctor_documents;
pub mod doctor_profile;
pub mod doctors;
pub mod notifications;
pub mod sessions;
pub mod video;

use std::net::IpAddr;

use actix_web::{web, HttpRequest};
use medflow_infra::event_store::{Committed, EventMetadata};
use medflow_infra::sessions::Session;
use medflow_infra::web::{request_id, resource};
use serde::Serialize;
use utoipa::ToSchema;

/// Routes whose rejected requests leave no access entry: login records its own security
/// entries, and LiveKit webhooks come from a server, not a person. Every other rejected
/// command (denied, invalid, conflicting) is recorded, a rejected registration too,
/// without an actor.
pub const UNAUDITED_ROUTES: &[&str] = &[
    "/sessions",
    "/webhooks/livekit",
    "/health/",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/",
];

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/accounts", "POST").route(web::post().to(accounts::register)))
        .service(
            resource("/admin/accounts", "POST").route(web::post().to(admin_accounts::create_admin)),
        )
        .service(
            resource("/admin/accounts/{account_id}/suspension", "POST, DELETE")
                .route(web::post().to(admin_accounts::suspend))
                .route(web::delete().to(admin_accounts::reinstate)),
        )
        .service(
            resource("/sessions", "POST, DELETE")
                .route(web::post().to(sessions::login))
                .route(web::delete().to(sessions::logout_everywhere)),
        )
        .service(resource("/sessions/current", "DELETE").route(web::delete().to(sessions::logout)))
        .service(
            resource("/notifications/{notification_id}/read", "POST")
                .route(web::post().to(notifications::mark_read)),
        )
        .configure(configure_doctors)
        .configure(configure_appointments);
}

fn configure_appointments(config: &mut web::ServiceConfig) {
    config
        .service(resource("/appointments", "POST").route(web::post().to(appointments::book)))
        .service(
            resource("/appointments/{appointment_id}/reschedule", "POST")
                .route(web::post().to(appointments::reschedule)),
        )
        .service(
            resource("/appointments/{appointment_id}/cancellation", "POST")
                .route(web::post().to(appointment_lifecycle::cancel)),
        )
        .service(
            resource("/appointments/{appointment_id}/start", "POST")
                .route(web::post().to(appointment_lifecycle::start)),
        )
        .service(
            resource("/appointments/{appointment_id}/completion", "POST")
                .route(web::post().to(appointment_lifecycle::complete)),
        )
        .service(
            resource("/appointments/{appointment_id}/no-show", "POST")
                .route(web::post().to(appointment_lifecycle::no_show)),
        )
        .service(
            resource("/appointments/{appointment_id}/video-token", "POST")
                .route(web::post().to(video::video_token)),
        )
        .service(
            resource("/webhooks/livekit", "POST").route(web::post().to(video::livekit_webhook)),
        );
}

fn configure_doctors(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/doctors/me/profile", "PUT")
                .route(web::put().to(doctor_profile::update_profile)),
        )
        .service(
            resource("/doctors/me/submission", "POST")
                .route(web::post().to(doctor_profile::submit)),
        )
        .service(
            resource("/doctors/me/license-documents/uploads", "POST")
                .route(web::post().to(doctor_documents::create_upload)),
        )
        .service(
            resource("/doctors/me/license-documents", "POST")
                .route(web::post().to(doctor_documents::attach)),
        )
        .service(
            resource("/doctors/me/availability", "PUT")
                .route(web::put().to(doctor_availability::set_availability)),
        )
        .service(
            resource("/doctors/me/time-off", "POST")
                .route(web::post().to(doctor_availability::add_time_off)),
        )
        .service(
            resource("/doctors/me/time-off/{time_off_id}", "DELETE")
                .route(web::delete().to(doctor_availability::remove_time_off)),
        )
        .service(
            resource("/admin/doctors/{doctor_id}/approval", "POST")
                .route(web::post().to(admin_doctors::approve)),
        )
        .service(
            resource("/admin/doctors/{doctor_id}/rejection", "POST")
                .route(web::post().to(admin_doctors::reject)),
        )
        .service(
            resource("/admin/doctors/{doctor_id}/suspension", "POST, DELETE")
                .route(web::post().to(admin_doctors::suspend))
                .route(web::delete().to(admin_doctors::reinstate)),
        );
}

/// Response of every accepted command.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// Id of the aggregate the command changed.
    pub aggregate_id: String,
    /// Sequence of the aggregate's last event; pass it to the query API to read your
    /// own write.
    pub sequence: u64,
}

impl From<Committed> for CommandAccepted {
    fn from(committed: Committed) -> Self {
        Self {
            aggregate_id: committed.aggregate_id,
            sequence: committed.sequence as u64,
        }
    }
}

/// Event metadata for a request made by `actor` (or anonymously).
pub fn metadata(actor: Option<&Session>) -> EventMetadata {
    EventMetadata {
        actor_id: actor.map(|session| session.account_id),
        actor_role: actor.map(|session| session.role),
        request_id: request_id::current().unwrap_or_default(),
        session_id: actor.map(|session| session.session_id),
    }
}

/// Returns the client's IP address, taken from the TCP peer. Forwarding headers are ignored because
/// any client can set them.
pub fn client_address(request: &HttpRequest) -> IpAddr {
    request
        .peer_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Records the aggregate id on the request's root span.
pub fn record_aggregate(request: &HttpRequest, aggregate_id: &str) {
    use actix_web::HttpMessage;
    if let Some(span) = request.extensions().get::<tracing_actix_web::RootSpan>() {
        span.record("aggregate_id", aggregate_id);
    }
}
