//! HTTP plumbing shared by the command and query APIs.

pub mod auth;
pub mod health;
pub mod json;
pub mod metrics;
pub mod ops;
pub mod problem;
pub mod request_id;

pub use problem::ApiError;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::Error;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Root span of every request: tracing-actix-web's fields plus the caller and the
/// aggregate, recorded once known. Never add personal data here.
pub struct MedflowRootSpan;

impl RootSpanBuilder for MedflowRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(
            request,
            actor_id = tracing::field::Empty,
            actor_role = tracing::field::Empty,
            aggregate_id = tracing::field::Empty
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
