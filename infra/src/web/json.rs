//! `JsonBody<T>`: a JSON extractor whose errors name the offending field.
//!
//! actix-web's own `Json` reports serde's message, which for a wrong type does not say
//! which field it was. This extractor tracks the path with serde_path_to_error and
//! turns every failure into a problem response: 415 for a non-JSON content type,
//! 413 for an oversized body, 400 for broken JSON, 422 for a missing or mistyped field.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use medflow_domain::FieldError;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Largest accepted request body. Command bodies are small; this bounds memory use.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut payload = payload.take();
        Box::pin(async move {
            let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if essence != "application/json" {
                let shown = if content_type.is_empty() { "none" } else { content_type.as_str() };
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type is '{shown}'; send application/json"
                )));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| ApiError::MalformedBody(error.to_string()))?;
                if body.len() + chunk.len() > BODY_LIMIT {
                    return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

/// Deserializes `body`, naming the field that failed.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|_| ApiError::MalformedBody("unexpected data after the JSON value".to_owned()))?;
            Ok(value)
        }
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::MalformedBody(format!(
                    "syntax error at line {} column {}",
                    inner.line(),
                    inner.column()
                )));
            }
            let message = strip_position(&inner.to_string());
            // A missing field is reported at its parent's path; name the field instead.
            if let Some(field) = missing_field_name(&message) {
                let full = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
                return Err(ApiError::Validation(vec![FieldError::new(full, "is required")]));
            }
            let field = if path == "." { "body".to_owned() } else { path };
            Err(ApiError::Validation(vec![FieldError::new(field, message)]))
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u8,
    }

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_field_is_named() {
        assert_eq!(field_of(parse::<Body>(br#"{"age": 3}"#).unwrap_err()), "email");
    }

    #[test]
    fn wrong_type_is_named() {
        assert_eq!(field_of(parse::<Body>(br#"{"email": 5, "age": 3}"#).unwrap_err()), "email");
        assert_eq!(field_of(parse::<Body>(br#"{"email": "a", "age": 300}"#).unwrap_err()), "age");
    }

    #[test]
    fn syntax_error_is_malformed_body() {
        assert!(matches!(parse::<Body>(br#"{"email": "#), Err(ApiError::MalformedBody(_))));
        assert!(matches!(parse::<Body>(br#"{"email": "a", "age": 3} x"#), Err(ApiError::MalformedBody(_))));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse::<Body>(br#"{"email": "a", "age": 3, "role": "admin"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown field `role`"), "{error}");
    }
}
