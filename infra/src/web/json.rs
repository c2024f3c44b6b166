//! `JsonBody<T>`: a JSON extractor whose errors name every offending field.
//!
//! actix-web's own `Json` reports only serde's first error, which for a wrong type does
//! not say which field it was and echoes the value. This extractor first checks the body
//! against the field list of [`RequestBody`] and reports every missing, mistyped or
//! unknown field at once, without echoing values of sensitive fields. Arrays and nested
//! objects are checked the same way, and their errors name the path, such as
//! `windows[2].start`. Failures become
//! problem responses: 415 for a non-JSON content type, 413 for an oversized body, 400
//! for broken JSON and 422 for fields that do not fit.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use medflow_domain::values::truncate;
use medflow_domain::FieldError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiError;

/// Largest accepted request body. Command bodies are small; this bounds memory use.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Maximum number of errors reported for the elements of one array. A 64 KiB body can
/// hold thousands of bad elements, and a response listing each would be far larger
/// than the request.
pub const MAX_ELEMENT_ERRORS: usize = 20;

pub struct JsonBody<T>(pub T);

/// JSON type a request field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Integer,
    Boolean,
    /// An array whose every element has this kind.
    Array(&'static JsonKind),
    /// An object with exactly these fields.
    Object(&'static [Field]),
}

impl JsonKind {
    /// Checks the JSON type only; elements and object fields are checked by `check_value`.
    fn matches(self, value: &Value) -> bool {
        match self {
            JsonKind::String => value.is_string(),
            JsonKind::Integer => value.is_i64() || value.is_u64(),
            JsonKind::Boolean => value.is_boolean(),
            JsonKind::Array(_) => value.is_array(),
            JsonKind::Object(_) => value.is_object(),
        }
    }

    fn article(self) -> &'static str {
        match self {
            JsonKind::String => "a string",
            JsonKind::Integer => "an integer",
            JsonKind::Boolean => "true or false",
            JsonKind::Array(_) => "an array",
            JsonKind::Object(_) => "an object",
        }
    }
}

/// One field of a request body or of an object nested in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: JsonKind,
    pub required: bool,
    /// Personal data or a secret: its value is never repeated in an error. This covers
    /// the elements and nested fields of a sensitive array or object too.
    pub sensitive: bool,
}

impl Field {
    pub const fn required(name: &'static str, kind: JsonKind) -> Self {
        Self {
            name,
            kind,
            required: true,
            sensitive: false,
        }
    }

    pub const fn sensitive(name: &'static str, kind: JsonKind) -> Self {
        Self {
            name,
            kind,
            required: true,
            sensitive: true,
        }
    }
}

/// A request body: a JSON object with exactly these top-level fields.
pub trait RequestBody: DeserializeOwned {
    const FIELDS: &'static [Field];
}

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: RequestBody + 'static> FromRequest for JsonBody<T> {
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
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" {
                let shown = if content_type.is_empty() {
                    "none"
                } else {
                    content_type.as_str()
                };
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

/// Deserializes `body`, naming every field that does not fit `T::FIELDS`.
pub fn parse<T: RequestBody>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::MalformedBody(format!(
            "syntax error at line {} column {}",
            error.line(),
            error.column()
        ))
    })?;
    let Value::Object(object) = &value else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            format!("must be a JSON object, got {}", describe_type(&value)),
        )]));
    };

    let mut errors = Vec::new();
    check_object("", T::FIELDS, false, object, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    // The checks above leave only finer constraints (such as integer ranges) to serde.
    // Its messages quote the rejected value between backticks, which is dropped here.
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let path = error.path().to_string();
        let message = redact_values(&error.into_inner().to_string());
        ApiError::Validation(vec![FieldError::new(path, message)])
    })
}

/// Appends an error for every field of `object` that is missing, unknown or of the
/// wrong kind. `path` is the object's own path, empty for the body itself.
fn check_object(
    path: &str,
    fields: &[Field],
    sensitive: bool,
    object: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    let field_path = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    for field in fields {
        match object.get(field.name) {
            None | Some(Value::Null) if field.required => {
                errors.push(FieldError::new(field_path(field.name), "is required"))
            }
            None | Some(Value::Null) => {}
            Some(found) => check_value(
                &field_path(field.name),
                field.kind,
                sensitive || field.sensitive,
                found,
                errors,
            ),
        }
    }
    for name in object.keys() {
        if !fields.iter().any(|field| field.name == name) {
            let known: Vec<&str> = fields.iter().map(|field| field.name).collect();
            errors.push(FieldError::new(
                field_path(&truncate(name, 40)),
                format!("is not a known field; expected {}", known.join(", ")),
            ));
        }
    }
}

/// Appends an error if `value` is not of `kind`, and checks the elements of an array
/// and the fields of an object.
fn check_value(
    path: &str,
    kind: JsonKind,
    sensitive: bool,
    value: &Value,
    errors: &mut Vec<FieldError>,
) {
    if !kind.matches(value) {
        errors.push(FieldError::new(path, wrong_type(kind, sensitive, value)));
        return;
    }
    match (kind, value) {
        (JsonKind::Array(element), Value::Array(items)) => {
            let before = errors.len();
            for (index, item) in items.iter().enumerate() {
                if errors.len() - before >= MAX_ELEMENT_ERRORS {
                    errors.push(FieldError::new(
                        path,
                        format!(
                            "has more invalid elements after {path}[{}]; only the first \
                             {MAX_ELEMENT_ERRORS} errors are listed",
                            index - 1
                        ),
                    ));
                    break;
                }
                check_value(
                    &format!("{path}[{index}]"),
                    *element,
                    sensitive,
                    item,
                    errors,
                );
            }
        }
        (JsonKind::Object(fields), Value::Object(object)) => {
            check_object(path, fields, sensitive, object, errors)
        }
        _ => {}
    }
}

fn describe_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(kind: JsonKind, sensitive: bool, found: &Value) -> String {
    let expected = kind.article();
    let got = describe_type(found);
    match found {
        Value::String(text) if !sensitive => format!(
            "must be {expected}, got the string '{}'",
            truncate(text, 40)
        ),
        Value::Number(number) if !sensitive => {
            format!("must be {expected}, got the number {number}")
        }
        Value::Bool(flag) if !sensitive => format!("must be {expected}, got {flag}"),
        _ => format!("must be {expected}, got {got}"),
    }
}

fn redact_values(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    for (index, part) in message.split('`').enumerate() {
        if index % 2 == 0 {
            redacted.push_str(part);
        } else {
            redacted.push_str("(value)");
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        password: String,
        age: u8,
    }

    impl RequestBody for Body {
        const FIELDS: &'static [Field] = &[
            Field::sensitive("email", JsonKind::String),
            Field::sensitive("password", JsonKind::String),
            Field::required("age", JsonKind::Integer),
        ];
    }

    fn fields_of(error: ApiError) -> Vec<(String, String)> {
        match error {
            ApiError::Validation(errors) => errors
                .into_iter()
                .map(|error| (error.field, error.detail))
                .collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_missing_field_is_named() {
        let fields = fields_of(parse::<Body>(br#"{"age": 3}"#).unwrap_err());
        let names: Vec<&str> = fields.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(names, ["email", "password"]);
    }

    #[test]
    fn wrong_types_are_named_without_sensitive_values() {
        let fields = fields_of(
            parse::<Body>(br#"{"email": 5, "password": 987654321, "age": "old"}"#).unwrap_err(),
        );
        assert_eq!(
            fields[0],
            (
                "email".to_owned(),
                "must be a string, got a number".to_owned()
            )
        );
        assert_eq!(
            fields[1],
            (
                "password".to_owned(),
                "must be a string, got a number".to_owned()
            )
        );
        assert_eq!(
            fields[2],
            (
                "age".to_owned(),
                "must be an integer, got the string 'old'".to_owned()
            )
        );
    }

    #[test]
    fn serde_range_error_hides_the_value() {
        let fields = fields_of(
            parse::<Body>(br#"{"email": "a", "password": "b", "age": 300}"#).unwrap_err(),
        );
        assert_eq!(fields[0].0, "age");
        assert!(!fields[0].1.contains("300"), "{}", fields[0].1);
    }

    #[test]
    fn non_object_body_is_rejected() {
        let fields = fields_of(parse::<Body>(b"[]").unwrap_err());
        assert_eq!(
            fields[0],
            (
                "body".to_owned(),
                "must be a JSON object, got an array".to_owned()
            )
        );
    }

    #[test]
    fn syntax_error_is_malformed_body() {
        assert!(matches!(
            parse::<Body>(br#"{"email": "#),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse::<Body>(br#"{"email": "a"} x"#),
            Err(ApiError::MalformedBody(_))
        ));
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Schedule {
        languages: Vec<String>,
        windows: Vec<Window>,
        secrets: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Window {
        weekday: String,
        start: String,
    }

    const WINDOW_FIELDS: &[Field] = &[
        Field::required("weekday", JsonKind::String),
        Field::required("start", JsonKind::String),
    ];

    impl RequestBody for Schedule {
        const FIELDS: &'static [Field] = &[
            Field::required("languages", JsonKind::Array(&JsonKind::String)),
            Field::required("windows", JsonKind::Array(&JsonKind::Object(WINDOW_FIELDS))),
            Field::sensitive("secrets", JsonKind::Array(&JsonKind::String)),
        ];
    }

    #[test]
    fn nested_values_are_accepted() {
        let parsed = parse::<Schedule>(
            br#"{"languages": ["en"], "windows": [{"weekday": "monday", "start": "09:00"}], "secrets": []}"#,
        )
        .unwrap();
        assert_eq!(parsed.languages, ["en"]);
        assert_eq!(parsed.windows[0].start, "09:00");
    }

    #[test]
    fn array_element_of_wrong_type_is_named() {
        let fields = fields_of(
            parse::<Schedule>(br#"{"languages": ["en", 7], "windows": [], "secrets": []}"#)
                .unwrap_err(),
        );
        assert_eq!(
            fields,
            [(
                "languages[1]".to_owned(),
                "must be a string, got the number 7".to_owned()
            )]
        );
    }

    #[test]
    fn non_array_is_rejected() {
        let fields = fields_of(
            parse::<Schedule>(br#"{"languages": "en", "windows": [], "secrets": []}"#).unwrap_err(),
        );
        assert_eq!(
            fields,
            [(
                "languages".to_owned(),
                "must be an array, got the string 'en'".to_owned()
            )]
        );
    }

    #[test]
    fn nested_object_errors_name_the_path() {
        let fields = fields_of(
            parse::<Schedule>(
                br#"{"languages": [], "windows": [{"weekday": "monday", "start": "09:00"}, {"weekday": 1, "end": "10:00"}, "monday"], "secrets": []}"#,
            )
            .unwrap_err(),
        );
        assert_eq!(
            fields,
            [
                (
                    "windows[1].weekday".to_owned(),
                    "must be a string, got the number 1".to_owned()
                ),
                ("windows[1].start".to_owned(), "is required".to_owned()),
                (
                    "windows[1].end".to_owned(),
                    "is not a known field; expected weekday, start".to_owned()
                ),
                (
                    "windows[2]".to_owned(),
                    "must be an object, got the string 'monday'".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn sensitive_array_elements_are_not_echoed() {
        let fields = fields_of(
            parse::<Schedule>(br#"{"languages": [], "windows": [], "secrets": [123456]}"#)
                .unwrap_err(),
        );
        assert_eq!(
            fields,
            [(
                "secrets[0]".to_owned(),
                "must be a string, got a number".to_owned()
            )]
        );
    }

    #[test]
    fn element_errors_are_capped() {
        let numbers = vec!["1"; 100].join(",");
        let body = format!(r#"{{"languages": [{numbers}], "windows": [], "secrets": []}}"#);
        let fields = fields_of(parse::<Schedule>(body.as_bytes()).unwrap_err());
        assert_eq!(fields.len(), MAX_ELEMENT_ERRORS + 1);
        assert_eq!(fields[MAX_ELEMENT_ERRORS - 1].0, "languages[19]");
        assert_eq!(fields[MAX_ELEMENT_ERRORS].0, "languages");
        assert!(
            fields[MAX_ELEMENT_ERRORS].1.contains("after languages[19]"),
            "{}",
            fields[MAX_ELEMENT_ERRORS].1
        );
    }

    #[test]
    fn unknown_field_is_rejected() {
        let fields = fields_of(
            parse::<Body>(br#"{"email": "a", "password": "b", "age": 3, "role": "admin"}"#)
                .unwrap_err(),
        );
        assert_eq!(fields[0].0, "role");
        assert!(
            fields[0].1.contains("expected email, password, age"),
            "{}",
            fields[0].1
        );
    }
}
