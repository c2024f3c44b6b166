//! Parsers for query parameters that several routes share. Each records a field error
//! naming the parameter and the value instead of failing at once, so one response can
//! list every invalid parameter.

use chrono::{DateTime, Utc};
use medflow_domain::values::truncate;
use medflow_domain::FieldError;

/// Parses an optional RFC 3339 date-time; records an error for `field` when it is invalid.
pub fn optional_instant(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
) -> Option<DateTime<Utc>> {
    let raw = raw?;
    match DateTime::parse_from_rfc3339(raw) {
        Ok(value) => Some(value.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                format!("'{}' is not an RFC 3339 date-time", truncate(raw, 40)),
            ));
            None
        }
    }
}

/// Parses the `limit` parameter: `default` when absent, otherwise an integer from 1 to
/// `max`. An invalid value records an error and yields `default`.
pub fn page_size(errors: &mut Vec<FieldError>, raw: Option<&str>, default: i64, max: i64) -> i64 {
    let Some(raw) = raw else {
        return default;
    };
    match raw
        .parse::<i64>()
        .ok()
        .filter(|value| (1..=max).contains(value))
    {
        Some(limit) => limit,
        None => {
            errors.push(FieldError::new(
                "limit",
                format!("'{}' is not an integer from 1 to {max}", truncate(raw, 40)),
            ));
            default
        }
    }
}

/// Turns the message of a query string that failed to deserialize into a field error.
/// For an unknown, missing or repeated field, serde names the parameter in backticks, and
/// that name becomes the error's field. Other messages name the whole `query`.
pub fn deserialize_error(message: &str) -> FieldError {
    let detail = message.trim_start_matches("Query deserialize error: ");
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| detail.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty());
    FieldError::new(named.unwrap_or("query"), detail.to_owned())
}

#[cfg(test)]
mod deserialize_error_tests {
    use super::*;

    fn field_of(message: &str) -> String {
        deserialize_error(message).field
    }

    #[test]
    fn unknown_parameter_is_the_field() {
        let message =
            "Query deserialize error: unknown field `colour`, expected one of `specialty`, `limit`";
        assert_eq!(field_of(message), "colour");
    }

    #[test]
    fn missing_parameter_is_the_field() {
        assert_eq!(field_of("missing field `date`"), "date");
    }

    #[test]
    fn other_errors_name_the_query() {
        assert_eq!(
            field_of("Query deserialize error: invalid type: sequence"),
            "query"
        );
        assert_eq!(field_of("unknown field ``, expected `a`"), "query");
    }
}
