//! Bearer-token authentication against the session store, and role checks.
//!
//! [`Authenticated`] looks the session up in PostgreSQL before the handler runs.
//! [`AuthenticatedCommand`] may take it from the process's session cache instead, because
//! its outcome is checked later. A command commits its events in a statement that
//! requires the session to be unrevoked. Any other response passes [`SessionCheck`],
//! which looks the session up before the response is sent.

use std::future::{ready, Ready};
use std::ops::Deref;
use std::rc::Rc;

use actix_web::body::BoxBody;
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use futures::future::LocalBoxFuture;
use medflow_domain::values::Role;
use tracing_actix_web::RootSpan;

use super::ApiError;
use crate::sessions::{Session, SessionStore};

/// Detail of the 401 for a token without a live session.
pub const SESSION_ENDED: &str = "the session is unknown, expired or logged out; log in again";

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
        let request = request.clone();
        Box::pin(async move {
            let (token, store) = credentials(&request)?;
            let session = store
                .authenticate(&token)
                .await
                .map_err(ApiError::internal)?
                .ok_or(ApiError::Unauthorized(SESSION_ENDED))?;
            Ok(accept(&request, session))
        })
    }
}

/// A command request with a live session, possibly taken from the session cache
/// without a lookup. Only for handlers that append events through the command bus with
/// the session in their metadata (`EventMetadata::session_id`) and call
/// [`confirm_session`] once the append committed. [`SessionCheck`] must wrap them.
#[derive(Debug, Clone)]
pub struct AuthenticatedCommand(Authenticated);

impl Deref for AuthenticatedCommand {
    type Target = Authenticated;

    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

/// Marks a request whose session came from the cache, with the token to look it up.
struct Remembered(String);

/// Marks a request whose command committed in a statement that checked its session.
struct Confirmed;

impl FromRequest for AuthenticatedCommand {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let request = request.clone();
        let credentials = credentials(&request);
        let remembered = credentials
            .as_ref()
            .ok()
            .and_then(|(token, store)| Some((token.clone(), store.remembered(token)?)));
        match remembered {
            Some((token, session)) => {
                request.extensions_mut().insert(Remembered(token));
                let authenticated = accept(&request, session);
                Box::pin(async move { Ok(AuthenticatedCommand(authenticated)) })
            }
            None => {
                let lookup = Authenticated::from_request(&request, payload);
                Box::pin(async move { Ok(AuthenticatedCommand(lookup.await?)) })
            }
        }
    }
}

/// Records that the request's command committed in a statement that required its
/// session to be live, so [`SessionCheck`] need not look it up again.
pub fn confirm_session(request: &HttpRequest) {
    request.extensions_mut().insert(Confirmed);
}

fn credentials(request: &HttpRequest) -> Result<(String, web::Data<SessionStore>), ApiError> {
    let token = bearer_token(request).ok_or(ApiError::Unauthorized(
        "send 'Authorization: Bearer <session token>'",
    ))?;
    let store = request
        .app_data::<web::Data<SessionStore>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("SessionStore is not registered")))?;
    Ok((token, store))
}

fn accept(request: &HttpRequest, session: Session) -> Authenticated {
    if let Some(span) = request.extensions().get::<RootSpan>() {
        span.record("actor_id", tracing::field::display(session.account_id));
        span.record("actor_role", session.role.as_str());
    }
    // The access log reads the caller from here once the response is ready.
    request.extensions_mut().insert(session.clone());
    Authenticated { session }
}

/// Middleware that looks the session up before a response leaves whose handler acted
/// on a cached session ([`AuthenticatedCommand`]) without committing a checked write.
/// If the session has ended, the response becomes 401.
#[derive(Clone, Copy, Default)]
pub struct SessionCheck;

impl<S> Transform<S, ServiceRequest> for SessionCheck
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = SessionCheckService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionCheckService {
            service: Rc::new(service),
        }))
    }
}

pub struct SessionCheckService<S> {
    service: Rc<S>,
}

impl<S> Service<ServiceRequest> for SessionCheckService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let response = service.call(request).await?;
            let unconfirmed = {
                let extensions = response.request().extensions();
                match extensions.get::<Remembered>() {
                    Some(Remembered(token)) if extensions.get::<Confirmed>().is_none() => {
                        Some(token.clone())
                    }
                    _ => None,
                }
            };
            let Some(token) = unconfirmed else {
                return Ok(response);
            };
            let Some(store) = response
                .request()
                .app_data::<web::Data<SessionStore>>()
                .cloned()
            else {
                return Ok(response);
            };
            let problem = match store.authenticate(&token).await {
                Ok(Some(_)) => return Ok(response),
                Ok(None) => {
                    tracing::info!(
                        status = response.status().as_u16(),
                        "session ended while a command ran on its cached copy; answering 401"
                    );
                    ApiError::Unauthorized(SESSION_ENDED)
                }
                Err(error) => ApiError::internal(error),
            };
            Ok(response.into_response(problem.error_response()))
        })
    }
}
