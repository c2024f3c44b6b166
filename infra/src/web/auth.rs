//! Bearer-token authentication against the session store, and role checks.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use medflow_domain::values::Role;
use tracing_actix_web::RootSpan;

use super::ApiError;
use crate::sessions::{Session, SessionStore};

/// A request made with a live session. Extracting it looks the session up in
/// PostgreSQL, so a revoked session is rejected on its very next use.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Session,
}

impl Authenticated {
    /// Rejects the request with 403 unless the caller has one of `roles`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.session.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "this action requires the role {}; the session has role {}",
            allowed.join(" or "),
            self.session.role
        )))
    }
}

/// Returns the bearer token of the request, if it has a well-formed one.
pub fn bearer_token(request: &HttpRequest) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    // Tokens are 43 characters of URL-safe base64; anything far longer is not ours.
    (!token.is_empty() && token.len() <= 128).then(|| token.to_owned())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = bearer_token(request);
        let store = request.app_data::<web::Data<SessionStore>>().cloned();
        let root_span = request.extensions().get::<RootSpan>().cloned();
        let request = request.clone();
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized(
                "send 'Authorization: Bearer <session token>'",
            ))?;
            let store = store.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("SessionStore is not registered"))
            })?;
            let session = store
                .authenticate(&token)
                .await
                .map_err(ApiError::internal)?
                .ok_or(ApiError::Unauthorized(
                    "the session is unknown, expired or logged out; log in again",
                ))?;
            if let Some(span) = root_span {
                span.record("actor_id", tracing::field::display(session.account_id));
                span.record("actor_role", session.role.as_str());
            }
            // The access log reads the caller from here once the response is ready.
            request.extensions_mut().insert(session.clone());
            Ok(Authenticated { session })
        })
    }
}
