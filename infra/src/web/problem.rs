//! RFC 9457 problem details. Every error a handler returns becomes one of these, with a
//! stable `type`, a `detail` that names the field and value where a client sent
//! something wrong, and the request id. Internal errors are logged in full and reach
//! the client only as an opaque message.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use medflow_domain::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

use super::request_id;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI of the problem kind, such as `urn:medflow:problem:validation`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Identifier of the failed request, also sent as the `x-request-id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// One entry per rejected field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// A rejected field inside a validation problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// Path of the field in the request, such as `email` or `address.city`.
    pub field: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedBody(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{}", describe_fields(.0))]
    Validation(Vec<FieldError>),
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed; this resource accepts {allowed}")]
    MethodNotAllowed { allowed: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// A business rule rejected a well-formed request. `slug` becomes the problem type
    /// `urn:medflow:problem:<slug>`, and `field`, when set, is listed in `errors`.
    #[error("{detail}")]
    Rule {
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: String,
        field: Option<&'static str>,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn describe_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, detail)])
    }

    /// A 409 conflict with its own problem type.
    pub fn conflict(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Rule {
            status: StatusCode::CONFLICT,
            slug,
            title,
            detail: detail.into(),
            field: None,
        }
    }

    /// A 422 with its own problem type about the value of `field`.
    pub fn unprocessable(
        slug: &'static str,
        title: &'static str,
        field: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError::Rule {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            title,
            detail: detail.into(),
            field: Some(field),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MalformedBody(_) => ("malformed-body", "Malformed request body"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            ApiError::Validation(_) => ("validation", "Invalid request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Rule { slug, title, .. } => (slug, title),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Rule { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = request_id::current();
        let detail = match self {
            ApiError::Internal(error) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = ?error, "request failed");
                "the server failed to process the request; report the request id if it persists"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let (slug, title) = self.kind();
        let problem = Problem {
            problem_type: format!("urn:medflow:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            request_id,
            errors: match self {
                ApiError::Validation(errors) => errors
                    .iter()
                    .map(|error| ProblemField {
                        field: error.field.clone(),
                        detail: error.detail.clone(),
                    })
                    .collect(),
                ApiError::Rule {
                    field: Some(field),
                    detail,
                    ..
                } => vec![ProblemField {
                    field: (*field).to_owned(),
                    detail: detail.clone(),
                }],
                _ => Vec::new(),
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::TooManyRequests { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allowed } => {
                response.insert_header((header::ALLOW, *allowed));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Unauthorized(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        response.json(problem)
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Validation(vec![error])
    }
}
