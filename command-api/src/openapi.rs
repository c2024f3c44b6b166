//! The OpenAPI 3 document of the command API, served at `/openapi.json` and rendered
//! interactively at `/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "MedFlow command API", description = "Commands that change MedFlow's state. Every accepted command returns the aggregate id and the committed sequence."),
    paths(
        routes::accounts::register,
        routes::admin_accounts::create_admin,
        routes::admin_accounts::suspend,
        routes::admin_accounts::reinstate,
        routes::sessions::login,
        routes::sessions::logout,
        routes::sessions::logout_everywhere,
        routes::doctor_profile::update_profile,
        routes::doctor_profile::submit,
        routes::doctor_documents::create_upload,
        routes::doctor_documents::attach,
        routes::doctor_availability::set_availability,
        routes::doctor_availability::add_time_off,
        routes::doctor_availability::remove_time_off,
        routes::admin_doctors::approve,
        routes::admin_doctors::reject,
        routes::admin_doctors::suspend,
        routes::admin_doctors::reinstate,
        routes::appointments::book,
        routes::appointments::reschedule,
        routes::appointment_lifecycle::cancel,
        routes::appointment_lifecycle::start,
        routes::appointment_lifecycle::complete,
        routes::appointment_lifecycle::no_show,
        routes::video::video_token,
        routes::video::livekit_webhook,
        routes::notifications::mark_read,
    ),
    modifiers(&SessionAuth),
    tags(
        (name = "accounts", description = "Registration"),
        (name = "sessions", description = "Login and logout"),
        (name = "doctors", description = "A doctor's own profile, license documents, availability and time off"),
        (name = "appointments", description = "Booking, rescheduling, cancellation and the consultation itself"),
        (name = "video", description = "LiveKit tokens for consultations and LiveKit's signed webhooks"),
        (name = "notifications", description = "In-app notifications"),
        (name = "admin", description = "Admin-only management of accounts and doctor verification"),
    )
)]
pub struct ApiDoc;

struct SessionAuth;

impl Modify for SessionAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
