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
