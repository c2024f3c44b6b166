//! Demo steps for the audit trail: another patient's denied read, then a compliance
//! officer (created by the admin) replays everything that touched the patient, exports
//! it as FHIR AuditEvents and verifies the hash chain and signed checkpoints.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{expect, step, Demo, PATIENT_PASSWORD};

pub struct Patient<'a> {
    pub account_id: &'a str,
    pub appointment_id: &'a str,
}

pub async fn review(
    demo: &Demo,
    admin: &str,
    patient: &Patient<'_>,
    other_patient: &str,
) -> anyhow::Result<()> {
    let snooping = demo
        .http
        .get(format!(
            "{}/appointments/{}",
            demo.settings.platform.query_url, patient.appointment_id
        ))
        .bearer_auth(other_patient)
        .send()
        .await?;
    expect(
        snooping.status() == StatusCode::NOT_FOUND,
        "another patient cannot read the appointment",
    )?;
    step("another patient asked for the appointment: 404, recorded as a denied access");

    let email = format!("compliance.{}@example.org", demo.run);
    demo.send(
        demo.http
            .post(format!("{}/admin/accounts", demo.settings.platform.command_url))
            .bearer_auth(admin)
            .json(&json!({"email": email, "name": "Casey Compliance", "password": PATIENT_PASSWORD, "role": "compliance"})),
    )
    .await?;
    let officer = demo.login(&email, PATIENT_PASSWORD).await?;
    step("admin created a compliance officer, who logged in");

    let records = demo
        .http
        .get(format!(
            "{}/audit/records?patient_id={}",
            demo.settings.platform.query_url, patient.account_id
        ))
        .bearer_auth(&officer)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let records: Vec<Value> = records
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("the replay is not JSON lines")?;
    let changes = records.iter().filter(|r| r["kind"] == "event").count();
    let reads = records.iter().filter(|r| r["kind"] == "access").count();
    let denied = records.iter().filter(|r| r["outcome"] == "denied").count();
    expect(denied >= 1, "the denied read is in the patient's trail")?;
    step(&format!(
        "compliance replayed the patient's trail: {changes} changes, {reads} accesses ({denied} denied)"
    ));

    let export = demo
        .http
        .get(format!(
            "{}/audit/fhir?patient_id={}&format=bundle",
            demo.settings.platform.query_url, patient.account_id
        ))
        .bearer_auth(&officer)
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    let resources = export["entry"].as_array().map_or(0, Vec::len);
    // The replay above was itself an access to the patient's data, so the export
    // holds it too.
    expect(
        resources > records.len(),
        "the FHIR export holds one AuditEvent per record, the replay included",
    )?;
    step(&format!(
        "compliance exported them as a FHIR Bundle of {resources} AuditEvent resources (the replay itself included)"
    ));

    let report = demo
        .get(
            &officer,
            &format!("{}/admin/audit/verify", demo.settings.platform.query_url),
        )
        .await?;
    expect(report["intact"] == true, "the audit trail verifies")?;
    for stream in report["streams"].as_array().into_iter().flatten() {
        step(&format!(
            "verify {}: intact up to position {}, {} rows checked, {} not sealed yet",
            stream["stream"],
            stream["sealed_up_to"],
            stream["rows_checked"],
            stream["unsealed_rows"]
        ));
    }
    Ok(())
}
