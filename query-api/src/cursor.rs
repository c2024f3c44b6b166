//! Keyset pagination cursors: the sort key `(timestamp, id)` of a page's last row,
//! base64url encoded so clients treat it as opaque.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.to_rfc3339()))
}

/// Returns the position a cursor stands for, or `None` if it was not made by [`encode`].
pub fn decode(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (time, id) = decoded.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
        Uuid::parse_str(id).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let time = DateTime::parse_from_rfc3339("2026-03-29T01:30:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::from_u128(42);
        assert_eq!(decode(&encode(time, id)), Some((time, id)));
    }

    #[test]
    fn foreign_cursor_is_rejected() {
        assert_eq!(decode("not-a-cursor"), None);
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode("2026-01-01|not-a-uuid")),
            None
        );
    }
}
