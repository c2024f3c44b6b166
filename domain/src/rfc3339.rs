//! Serialization of instants as chrono's own `Serialize` writes them (RFC 3339, `Z`, as
//! many fractional digits as needed), but passed to the serializer as one string.
//! chrono's implementation writes an instant character by character, and serde_json
//! escapes each character on its own, which showed up in profiles of slot lists and
//! audit replays. Use it with `#[serde(serialize_with = "rfc3339::serialize")]`.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn serialize<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn output_matches_chrono_serialize() {
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for at in [
            whole,
            whole + TimeDelta::milliseconds(120),
            whole + TimeDelta::microseconds(123_456),
            whole + TimeDelta::nanoseconds(7),
        ] {
            let ours = serialize(&at, serde_json::value::Serializer).unwrap();
            assert_eq!(ours, serde_json::to_value(at).unwrap());
        }
    }
}
