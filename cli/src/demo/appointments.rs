//! Demo steps for appointments: a booking, a competing request for the same slot, a
//! reschedule, the doctor's day and a video token asked for too early. Returns the
//! appointment's id.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::doctors::DemoDoctor;
use super::{expect, step, Demo};

pub async fn book_and_move(
    demo: &Demo,
    patient: &str,
    rival: &str,
    doctor: &DemoDoctor<'_>,
) -> anyhow::Result<String> {
    let from = chrono::Utc::now();
    let to = from + chrono::TimeDelta::days(7);
    let format =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let slots = demo
        .get(
            patient,
            &format!(
                "{}/doctors/{}/slots?from={}&to={}",
                demo.settings.query_url,
                doctor.account_id,
                format(from),
                format(to)
            ),
        )
        .await?;
    let starts: Vec<String> = slots["slots"]
        .as_array()
        .context("slot list missing")?
        .iter()
        .filter_map(|slot| slot["start"].as_str().map(str::to_owned))
        .collect();
    expect(starts.len() >= 2, "the doctor offers at least two slots")?;

    let booking = json!({ "doctor_id": doctor.account_id, "start": starts[0] });
    let booked = demo
        .send(
            demo.http
                .post(format!("{}/appointments", demo.settings.command_url))
                .bearer_auth(patient)
                .json(&booking),
        )
        .await?;
    let appointment_id = booked["appointment_id"]
        .as_str()
        .context("appointment_id missing")?
        .to_owned();
    step(&format!(
        "patient booked {} at {} (doctor's zone {})",
        doctor.name, starts[0], booked["doctor_time_zone"]
    ));

    let rival_attempt = demo
        .http
        .post(format!("{}/appointments", demo.settings.command_url))
        .bearer_auth(rival)
        .json(&booking)
        .send()
        .await?;
    let status = rival_attempt.status();
    let problem: Value = rival_attempt.json().await?;
    expect(
        status == StatusCode::CONFLICT,
        "a second booking of the same slot is refused",
    )?;
    step(&format!(
        "another patient asked for the same slot: {status} {}",
        problem["type"]
    ));

    let moved = demo
        .send(
            demo.http
                .post(format!(
                    "{}/appointments/{appointment_id}/reschedule",
                    demo.settings.command_url
                ))
                .bearer_auth(patient)
                .json(&json!({ "start": starts[1] })),
        )
        .await?;
    let view = demo
        .get(
            patient,
            &format!(
                "{}/appointments/{appointment_id}?wait_for_sequence={}&wait_ms=10000",
                demo.settings.query_url, moved["sequence"]
            ),
        )
        .await?;
    step(&format!(
        "patient moved the appointment to {}; the query API shows {} ({})",
        starts[1], view["start"], view["status"]
    ));

    let local_date = view["start"]
        .as_str()
        .and_then(|start| chrono::DateTime::parse_from_rfc3339(start).ok())
        .zip(doctor.time_zone.parse::<chrono_tz::Tz>().ok())
        .map(|(start, zone)| start.with_timezone(&zone).date_naive())
        .context("appointment start missing")?;
    let day = demo
        .get(
            doctor.token,
            &format!(
                "{}/doctors/me/schedule?date={local_date}",
                demo.settings.query_url
            ),
        )
        .await?;
    let count = day["appointments"].as_array().map_or(0, Vec::len);
    step(&format!(
        "{} sees {count} appointment(s) on {local_date} in {}",
        doctor.name, day["time_zone"]
    ));

    let early = demo
        .http
        .post(format!(
            "{}/appointments/{appointment_id}/video-token",
            demo.settings.command_url
        ))
        .bearer_auth(patient)
        .send()
        .await?;
    let status = early.status();
    let problem: Value = early.json().await?;
    if status == StatusCode::CREATED {
        step("video token issued: the appointment's join window is open");
    } else {
        step(&format!(
            "video token refused before the join window: {status} {}",
            problem["detail"]
        ));
    }
    Ok(appointment_id)
}
