//! Access entries for every request, written by one middleware that all routes pass
//! through, so a new route that reads patient data cannot forget its entry: only routes
//! listed as public (the doctor directory, health, metrics, API docs) are skipped.
//!
//! A handler states what it touched with [`target`], [`patient`] and
//! [`denied`]; the middleware adds the actor, route, outcome, request id and sealed
//! client address once the response is ready. If the entry cannot be written, the
//! response is replaced by 503: data is not handed out unrecorded.

use std::cell::RefCell;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpMessage, ResponseError};
use futures::future::LocalBoxFuture;
use uuid::Uuid;

use super::ApiError;
use crate::audit::replay::CLIENT_ADDRESS_FIELD;
use crate::audit::{AuditEntry, AuditLog, Outcome};
use crate::crypto::keys::KeyRing;
use crate::sessions::{Session, SessionStore};

/// Facts a handler reports about the request it served.
#[derive(Debug, Default, Clone)]
struct Note {
    target: Option<(&'static str, String)>,
    patients: Vec<Uuid>,
    denied: bool,
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

fn with_note(change: impl FnOnce(&mut Note)) {
    // Outside a request (unit tests, background tasks) there is nothing to note.
    let _ = NOTE.try_with(|note| change(&mut note.borrow_mut()));
}

/// Notes the record the request is about, such as `("appointment", id)`.
pub fn target(target_type: &'static str, target_id: impl ToString) {
    with_note(|note| note.target = Some((target_type, target_id.to_string())));
}

/// Notes a patient whose data the request read or tried to read. Call once per patient.
pub fn patient(patient_id: Uuid) {
    with_note(|note| {
        if !note.patients.contains(&patient_id) {
            note.patients.push(patient_id);
        }
    });
}

/// Returns the first patient noted for the current request, for handlers that write
/// an entry of their own.
pub fn noted_patient() -> Option<Uuid> {
    NOTE.try_with(|note| note.borrow().patients.first().copied())
        .ok()
        .flatten()
}

/// The caller may not see the record, whatever status the response carries (a
/// record of someone else returns 404, so that its existence is not revealed).
pub fn denied() {
    with_note(|note| note.denied = true);
}

/// Middleware writing one access entry per request (one per patient when a response
/// touches several), except for public routes: a listed route pattern, or any pattern
/// under a listed prefix ending in `/`.
#[derive(Clone)]
pub struct AccessLog {
    inner: Rc<Inner>,
}

struct Inner {
    audit: AuditLog,
    keys: Arc<KeyRing>,
    public_routes: &'static [&'static str],
    /// False where successes are recorded elsewhere: the command API's successful
    /// requests are events.
    record_success: bool,
}

impl AccessLog {
    pub fn new(
        audit: AuditLog,
        keys: Arc<KeyRing>,
        public_routes: &'static [&'static str],
    ) -> Self {
        Self {
            inner: Rc::new(Inner {
                audit,
                keys,
                public_routes,
                record_success: true,
            }),
        }
    }

    /// Records only denied and failed requests: for the command API, whose successful
    /// requests leave events.
    pub fn failures_only(
        audit: AuditLog,
        keys: Arc<KeyRing>,
        public_routes: &'static [&'static str],
    ) -> Self {
        Self {
            inner: Rc::new(Inner {
                audit,
                keys,
                public_routes,
                record_success: false,
            }),
        }
    }
}

impl<S> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService {
            service: Rc::new(service),
            inner: Rc::clone(&self.inner),
        }))
    }
}

pub struct AccessLogService<S> {
    service: Rc<S>,
    inner: Rc<Inner>,
}

impl<S> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let inner = Rc::clone(&self.inner);
        Box::pin(async move {
            let (response, note) = NOTE
                .scope(RefCell::new(Note::default()), async move {
                    let response = service.call(request).await;
                    (response, NOTE.with(|note| note.borrow().clone()))
                })
                .await;
            let response = response?;
            let Some(pattern) = response.request().match_pattern() else {
                // No route matched: nothing was read.
                return Ok(response);
            };
            if inner.public_routes.iter().any(|public| {
                pattern == *public || (public.ends_with('/') && pattern.starts_with(public))
            }) {
                return Ok(response);
            }
            let action = format!("{} {pattern}", response.request().method());
            match inner.record(&response, action, note).await {
                Ok(()) => Ok(response),
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "access entry could not be written; response withheld"
                    );
                    let problem = ApiError::Unavailable(
                        "the audit trail is unavailable, so the data cannot be released; retry shortly".to_owned(),
                    );
                    Ok(response.into_response(problem.error_response()))
                }
            }
        })
    }
}

impl Inner {
    async fn caller(&self, request: &actix_web::HttpRequest) -> Option<Session> {
        let token = super::auth::bearer_token(request)?;
        let store = request.app_data::<actix_web::web::Data<SessionStore>>()?;
        match store.authenticate(&token).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(error = %error, "looking up the caller of a rejected request failed");
                None
            }
        }
    }

    async fn record(
        &self,
        response: &ServiceResponse<BoxBody>,
        action: String,
        note: Note,
    ) -> anyhow::Result<()> {
        let mut session = response.request().extensions().get::<Session>().cloned();
        if session.is_none() {
            // An extractor that failed first (such as an invalid query string) stops the
            // handler before it authenticates; the caller is still looked up for the
            // entry.
            session = self.caller(response.request()).await;
        }
        let status = response.status();
        let outcome = if note.denied
            || status == actix_web::http::StatusCode::UNAUTHORIZED
            || status == actix_web::http::StatusCode::FORBIDDEN
        {
            Outcome::Denied
        } else if status.is_success() || status.is_redirection() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        if outcome == Outcome::Success && !self.record_success {
            return Ok(());
        }
        let client_address = match (&session, response.request().peer_addr()) {
            (Some(session), Some(peer)) => Some(
                self.keys
                    .seal(
                        session.account_id.0,
                        CLIENT_ADDRESS_FIELD,
                        peer.ip().to_string().as_bytes(),
                    )
                    .await?,
            ),
            _ => None,
        };
        let mut entry = AuditEntry::new(action, outcome);
        entry.actor_id = session.as_ref().map(|session| session.account_id);
        entry.actor_role = session.as_ref().map(|session| session.role);
        match note.target {
            Some((target_type, target_id)) => {
                entry.target_type = Some(target_type.into());
                entry.target_id = Some(target_id);
            }
            // Without a note, the route's last path parameter names the target.
            None => {
                if let Some((name, value)) = response.request().match_info().iter().last() {
                    let target_type = name.strip_suffix("_id").unwrap_or(name);
                    entry.target_type = Some(target_type.to_owned().into());
                    // PostgreSQL text cannot contain NUL, which a client can send as `%00`.
                    let printable = value
                        .chars()
                        .map(|c| if c == '\0' { '\u{FFFD}' } else { c });
                    entry.target_id = Some(printable.take(200).collect());
                }
            }
        }
        entry.request_id = super::request_id::current();
        entry.client_address = client_address;
        if note.patients.is_empty() {
            return self.audit.record(&entry).await;
        }
        let entries: Vec<AuditEntry> = note
            .patients
            .iter()
            .map(|patient| AuditEntry {
                patient_id: Some(*patient),
                ..entry.clone()
            })
            .collect();
        self.audit.record_all(&entries).await
    }
}
