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
    ),
    modifiers(&SessionAuth),
    tags(
        (name = "accounts", description = "Registration"),
        (name = "sessions", description = "Login and logout"),
        (name = "admin", description = "Admin-only account management"),
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
