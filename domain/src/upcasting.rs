//! Upcasters: old stored forms of events turned into the current form before anything
//! reads them. The command side's event store, the projectors, the reminder service and
//! the audit replay all use [`upcasters`], so every reader sees one shape per event.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// Every upcaster of the domain, oldest change first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(BookingConsultationKind)]
}

/// Event types whose current version is not "1".
const CURRENT_VERSIONS: &[(&str, &str)] = &[("AppointmentBooked", "2")];

/// True if `version` is the version this code writes for `event_type`, the only one a
/// reader should meet after [`upcast`].
pub fn is_current(event_type: &str, version: &str) -> bool {
    let current = CURRENT_VERSIONS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map_or("1", |(_, current)| *current);
    version == current
}

/// True if some upcaster changes events of this type and version.
pub fn needs_upcast(event_type: &str, version: &str) -> bool {
    upcasters()
        .iter()
        .any(|upcaster| upcaster.can_upcast(event_type, version))
}

/// Upcasts one stored event through every upcaster that applies to it, in order.
pub fn upcast(mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in upcasters() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

/// `AppointmentBooked` version 1 predates the consultation kind; every booking then was
/// a video consultation. Version 2 states it.
struct BookingConsultationKind;

impl EventUpcaster for BookingConsultationKind {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "AppointmentBooked" && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(Value::Object(fields)) = event.payload.get_mut("AppointmentBooked") {
            fields
                .entry("consultation")
                .or_insert_with(|| Value::String("video".to_owned()));
        }
        event.event_version = "2".to_owned();
        event
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::appointment::{AppointmentEvent, ConsultationKind};

    fn stored(version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            "a".to_owned(),
            1,
            "appointment".to_owned(),
            "AppointmentBooked".to_owned(),
            version.to_owned(),
            payload,
            json!({}),
        )
    }

    fn booking_v1() -> Value {
        json!({"AppointmentBooked": {
            "patient": "0b6c4c4e-7c1a-4a51-9a0a-1d2f3e4a5b6c",
            "doctor": "1b6c4c4e-7c1a-4a51-9a0a-1d2f3e4a5b6c",
            "slot": {"start": "2030-01-07T09:00:00Z", "end": "2030-01-07T09:30:00Z"},
            "doctor_time_zone": "Europe/Berlin"
        }})
    }

    #[test]
    fn a_version_1_booking_reads_as_a_video_consultation() {
        let event = upcast(stored("1", booking_v1()));
        assert_eq!(event.event_version, "2");
        let booked: AppointmentEvent = serde_json::from_value(event.payload).unwrap();
        let AppointmentEvent::AppointmentBooked { consultation, .. } = booked else {
            panic!("not a booking: {booked:?}");
        };
        assert_eq!(consultation, ConsultationKind::Video);
    }

    #[test]
    fn a_version_1_booking_does_not_deserialize_without_the_upcaster() {
        assert!(serde_json::from_value::<AppointmentEvent>(booking_v1()).is_err());
    }

    #[test]
    fn upcast_events_are_current() {
        let event = upcast(stored("1", booking_v1()));
        assert!(is_current(&event.event_type, &event.event_version));
        assert!(!is_current("AppointmentBooked", "1"));
        assert!(is_current("AppointmentCancelled", "1"));
        assert!(!is_current("AppointmentCancelled", "3"));
    }

    #[test]
    fn current_versions_pass_unchanged() {
        let mut payload = booking_v1();
        payload["AppointmentBooked"]["consultation"] = json!("video");
        let event = upcast(stored("2", payload.clone()));
        assert_eq!(
            (event.event_version.as_str(), event.payload),
            ("2", payload)
        );
    }
}
