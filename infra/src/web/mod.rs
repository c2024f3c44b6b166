//! HTTP plumbing shared by the command and query APIs.

pub mod access;
pub mod auth;
pub mod health;
pub mod json;
pub mod metrics;
pub mod ops;
pub mod problem;
pub mod request_id;

pub use problem::ApiError;

/// Creates a resource whose other methods get 405 with an `Allow` header listing `allowed`.
pub fn resource(path: &str, allowed: &'static str) -> actix_web::Resource {
    actix_web::web::resource(path).default_service(actix_web::web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allowed })
    }))
}

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::Error;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Root span of every request: method, route, path, status and request id, plus the
/// caller and the aggregate once known. The query string is left out because filters
/// such as an e-mail address travel in it; never add personal data here.
pub struct MedflowRootSpan;

impl RootSpanBuilder for MedflowRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        use actix_web::HttpMessage;
        use tracing::field::Empty;

        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = request.match_pattern().unwrap_or_default(),
            http.target = request.path(),
            http.status_code = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
            request_id = %request_id,
            actor_id = Empty,
            actor_role = Empty,
            aggregate_id = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        span.in_scope(|| tracing::info!(status, "request finished"));
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
