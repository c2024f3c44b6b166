//! Demo steps for appointments: a booking, a competing request for the same slot, a
//! reschedule, the doctor's day and a video token asked for too early. Returns the
//! appointment's id.

use anyhow::Context;
use medflow_cli::http::rfc3339;
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
    let slots = demo
        .get(
            patient,
            &format!(
                "{}/doctors/{}/slots?from={}&to={}",
                demo.settings.platform.query_url,
                doctor.account_id,
                rfc3339(from),
                rfc3339(to)
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
                .post(format!(
                    "{}/appointments",
                    demo.settings.platform.command_url
                ))
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
        .post(format!(
            "{}/appointments",
            demo.settings.platform.command_url
        ))
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
                    demo.settings.platform.command_url
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
                demo.settings.platform.query_url, moved["sequence"]
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
                demo.settings.platform.query_url
            ),
        )
        .await?;
    let count = day["appointments"].as_array().map_or(0, Vec::len);
    step(&format!(
        "{} sees {count} appointment(s) on {local_date} in {}",
        doctor.name, day["time_zone"]
    ));

    video(demo, patient, rival, doctor, &appointment_id, &starts).await?;
    Ok(appointment_id)
}

/// Asks for video tokens: the patient and the doctor inside the join window, another
/// patient, and the patient for a second appointment days ahead, outside its window.
async fn video(
    demo: &Demo,
    patient: &str,
    rival: &str,
    doctor: &DemoDoctor<'_>,
    appointment_id: &str,
    starts: &[String],
) -> anyhow::Result<()> {
    let token_url = |id: &str| {
        format!(
            "{}/appointments/{id}/video-token",
            demo.settings.platform.command_url
        )
    };
    for (who, token) in [("patient", patient), ("doctor", doctor.token)] {
        let response = demo
            .http
            .post(token_url(appointment_id))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status == StatusCode::CREATED {
            step(&format!(
                "{who} got a LiveKit token for room {} as {}, valid until {}",
                body["room"], body["identity"], body["expires_at"]
            ));
        } else {
            // `medflow demo` against a platform with the default 10-minute window.
            step(&format!(
                "{who}'s video token refused with {status}: {}; the room opens \
                 MEDFLOW_VIDEO_JOIN_BEFORE_MINUTES before the start",
                body["detail"]
            ));
        }
    }

    let stranger = demo
        .http
        .post(token_url(appointment_id))
        .bearer_auth(rival)
        .send()
        .await?;
    let status = stranger.status();
    expect(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "another patient gets no token for the appointment",
    )?;
    step(&format!(
        "another patient asked for a token of the same room: {status}"
    ));

    // A second appointment three days after the first, well outside its window.
    let parse = |start: &String| {
        chrono::DateTime::parse_from_rfc3339(start)
            .ok()
            .map(|start| start.with_timezone(&chrono::Utc))
    };
    let first = starts.first().and_then(parse).context("slot list empty")?;
    let later_start = starts
        .iter()
        .filter_map(parse)
        .find(|start| *start >= first + chrono::TimeDelta::days(3));
    let Some(later_start) = later_start else {
        step("no slot three days ahead, so the early token request is skipped");
        return Ok(());
    };
    let later = demo
        .send(
            demo.http
                .post(format!(
                    "{}/appointments",
                    demo.settings.platform.command_url
                ))
                .bearer_auth(patient)
                .json(&json!({ "doctor_id": doctor.account_id, "start": rfc3339(later_start) })),
        )
        .await?;
    let later_id = later["appointment_id"]
        .as_str()
        .context("appointment_id missing")?
        .to_owned();
    let early = demo
        .http
        .post(token_url(&later_id))
        .bearer_auth(patient)
        .send()
        .await?;
    let status = early.status();
    let problem: Value = early.json().await?;
    expect(
        status == StatusCode::CONFLICT,
        "a token days before the appointment is refused",
    )?;
    step(&format!(
        "token for the appointment at {} refused with {status}: {}",
        rfc3339(later_start),
        problem["detail"]
    ));
    demo.send(
        demo.http
            .post(format!(
                "{}/appointments/{later_id}/cancellation",
                demo.settings.platform.command_url
            ))
            .bearer_auth(patient)
            .json(&json!({ "reason": "booked by mistake" })),
    )
    .await?;
    step("patient cancelled that second appointment");
    Ok(())
}
