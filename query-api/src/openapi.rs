//! The OpenAPI 3 document of the query API, served at `/openapi.json` and rendered
//! interactively at `/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "MedFlow query API", description = "Reads of MedFlow's read models. Pass a command's sequence as wait_for_sequence to read your own write."),
    paths(
        routes::accounts::me,
        routes::accounts::list_accounts,
        routes::doctors::directory,
        routes::doctors::slots,
        routes::doctors::own_profile,
        routes::admin_doctors::verification_queue,
        routes::admin_doctors::document_download_url,
        routes::appointments::appointment,
        routes::appointments::patient_appointments,
        routes::appointments::doctor_schedule,
        routes::appointments::admin_overview,
        routes::notifications::list,
        routes::notifications::stream,
        routes::audit::records,
        routes::audit::fhir,
        routes::audit::verify,
    ),
    modifiers(&SessionAuth),
    tags(
        (name = "accounts", description = "The caller's own account"),
        (name = "audit", description = "Compliance: replay, FHIR export and verification of the audit trail"),
        (name = "doctors", description = "The doctor directory, slots and a doctor's own profile"),
        (name = "appointments", description = "A patient's appointments and a doctor's day"),
        (name = "notifications", description = "The caller's in-app notifications, listed or streamed live"),
        (name = "admin", description = "Admin-only views"),
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
