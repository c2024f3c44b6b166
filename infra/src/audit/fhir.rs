//! FHIR R4 `AuditEvent` resources for replayed records, as NDJSON lines or inside a
//! `collection` Bundle written piece by piece.

use chrono::SecondsFormat;
use serde_json::{json, Value};

use super::records::{AccessRecord, AuditRecord, EventRecord};

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// Identifier system of MedFlow's opaque ids; the target type follows the colon.
const ID_SYSTEM: &str = "urn:medflow";

/// The `AuditEvent` resource for one record.
pub fn audit_event(record: &AuditRecord) -> Value {
    match record {
        AuditRecord::Event(event) => change(event),
        AuditRecord::Access(access) => access_event(access),
    }
}

fn change(event: &EventRecord) -> Value {
    let (action, interaction) = if event.sequence <= 1 {
        ("C", "create")
    } else {
        ("U", "update")
    };
    let mut entities = Vec::new();
    if let Some(patient) = event.patient_id {
        entities.push(patient_entity(&patient.to_string()));
    }
    entities.push(json!({
        "what": {"identifier": {
            "system": format!("{ID_SYSTEM}:{}", event.aggregate_type),
            "value": event.aggregate_id,
        }},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        "detail": [
            {"type": "event_type", "valueString": event.event_type},
            {"type": "sequence", "valueString": event.sequence.to_string()},
        ],
    }));
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": format!("event-{}", event.position),
        "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": interaction}],
        "action": action,
        "recorded": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "outcome": "0",
        "agent": [agent(event.actor_id.as_deref(), event.actor_role.as_deref(), None)],
        "source": source("command-api"),
        "entity": entities,
    });
    if let Some(request_id) = &event.request_id {
        resource["entity"]
            .as_array_mut()
            .expect("entity is an array")
            .push(request_entity(request_id));
    }
    resource
}

fn access_event(access: &AccessRecord) -> Value {
    let is_login = access.action.starts_with("session.");
    let is_read = access.action.starts_with("GET ") || access.action.ends_with(".download");
    let event_type = if is_login {
        json!({"system": DICOM, "code": "110114", "display": "User Authentication"})
    } else {
        json!({"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"})
    };
    let (outcome, description) = match access.outcome.as_str() {
        "success" => ("0", None),
        "denied" if access.actor_id.is_none() => ("4", Some("denied: no valid session")),
        "denied" => ("4", Some("denied: the actor may not access this record")),
        _ => ("4", Some("failed")),
    };
    let mut entities = Vec::new();
    if let Some(patient) = access.patient_id {
        entities.push(patient_entity(&patient.to_string()));
    }
    if let (Some(target_type), Some(target_id)) = (&access.target_type, &access.target_id) {
        entities.push(json!({
            "what": {"identifier": {
                "system": format!("{ID_SYSTEM}:{target_type}"),
                "value": target_id,
            }},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }));
    }
    if let Some(request_id) = &access.request_id {
        entities.push(request_entity(request_id));
    }
    let actor = access.actor_id.map(|id| id.to_string());
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": format!("access-{}", access.position),
        "type": event_type,
        "action": if is_read { "R" } else { "E" },
        "recorded": access.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "outcome": outcome,
        "agent": [agent(actor.as_deref(), access.actor_role.as_deref(), access.client_address.as_deref())],
        "source": source(observer(&access.action)),
        "entity": entities,
    });
    if let Some(description) = description {
        resource["outcomeDesc"] = json!(description);
    }
    resource["subtype"] = json!([{"system": format!("{ID_SYSTEM}:action"), "code": access.action}]);
    resource
}

/// The person or system that acted. Patients are `Patient` resources, everyone else
/// (doctors, admins, compliance staff) `Practitioner`.
fn agent(actor: Option<&str>, role: Option<&str>, address: Option<&str>) -> Value {
    let mut agent = json!({
        "type": {"coding": [{"system": PARTICIPATION_TYPE, "code": "AUT", "display": "author (originator)"}]},
        "requestor": true,
    });
    match actor {
        Some(actor) => {
            let resource = if role == Some("patient") {
                "Patient"
            } else {
                "Practitioner"
            };
            agent["who"] = json!({"reference": format!("{resource}/{actor}")});
        }
        None => agent["who"] = json!({"display": "unauthenticated client"}),
    }
    if let Some(role) = role {
        agent["role"] = json!([{"text": role}]);
    }
    if let Some(address) = address {
        // Network access point type 2: IP address.
        agent["network"] = json!({"address": address, "type": "2"});
    }
    agent
}

/// The service that recorded an access entry: reads come from the query API, replays
/// run by operators from the CLI, logins and commands from the command API.
fn observer(action: &str) -> &'static str {
    if action.starts_with("GET ") {
        "query-api"
    } else if action.starts_with("cli ") {
        "cli"
    } else {
        "command-api"
    }
}

fn patient_entity(patient: &str) -> Value {
    json!({
        "what": {"reference": format!("Patient/{patient}")},
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    })
}

fn request_entity(request_id: &str) -> Value {
    json!({
        "what": {"identifier": {"system": format!("{ID_SYSTEM}:request"), "value": request_id}},
        "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
        "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
    })
}

fn source(observer: &str) -> Value {
    json!({
        "site": "medflow",
        "observer": {"display": format!("medflow {observer}")},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    })
}

/// Output forms of a FHIR export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhirFormat {
    /// One resource per line (`application/fhir+ndjson`).
    Ndjson,
    /// A `collection` Bundle (`application/fhir+json`).
    Bundle,
}

impl FhirFormat {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ndjson" => Some(FhirFormat::Ndjson),
            "bundle" => Some(FhirFormat::Bundle),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FhirFormat::Ndjson => "application/fhir+ndjson",
            FhirFormat::Bundle => "application/fhir+json",
        }
    }
}

/// Writes a FHIR export in pieces, so a Bundle of any size is streamed.
#[derive(Debug)]
pub struct FhirWriter {
    format: FhirFormat,
    written: u64,
}

impl FhirWriter {
    pub fn new(format: FhirFormat) -> Self {
        Self { format, written: 0 }
    }

    pub fn header(&self) -> Vec<u8> {
        match self.format {
            FhirFormat::Ndjson => Vec::new(),
            FhirFormat::Bundle => br#"{"resourceType":"Bundle","type":"collection""#.to_vec(),
        }
    }

    pub fn encode(&mut self, batch: &[AuditRecord]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(batch.len() * 1024);
        for record in batch {
            let resource = audit_event(record);
            match self.format {
                FhirFormat::Ndjson => {
                    serde_json::to_writer(&mut out, &resource)?;
                    out.push(b'\n');
                }
                FhirFormat::Bundle => {
                    // FHIR JSON allows no empty array, so `entry` opens with its first
                    // resource.
                    out.extend_from_slice(if self.written == 0 {
                        br#","entry":["#
                    } else {
                        b","
                    });
                    serde_json::to_writer(&mut out, &json!({"resource": resource}))?;
                }
            }
            self.written += 1;
        }
        Ok(out)
    }

    pub fn footer(&self) -> Vec<u8> {
        match self.format {
            FhirFormat::Ndjson => Vec::new(),
            FhirFormat::Bundle if self.written == 0 => b"}\n".to_vec(),
            FhirFormat::Bundle => b"]}\n".to_vec(),
        }
    }
}
