//! The doctor part of the demo: onboarding with a license upload through the S3 store,
//! verification by the admin, and a patient finding the doctor and their slots.

use std::time::{Duration, Instant};

use anyhow::Context;
use medflow_cli::http::rfc3339;
use medflow_cli::seed::WEEKDAYS;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{expect, step, Demo};

/// A tiny PDF standing in for a scanned license.
const LICENSE_PDF: &[u8] = b"%PDF-1.4\n% MedFlow demo license scan\n%%EOF\n";

pub struct DemoDoctor<'a> {
    pub account_id: &'a str,
    pub token: &'a str,
    pub name: &'a str,
    pub specialty: &'a str,
    pub time_zone: &'a str,
    /// Takes consultations every day around the clock, so the next bookable slot is
    /// about an hour away whenever the demo runs. Otherwise weekdays 09:00 to 17:00.
    pub around_the_clock: bool,
}

/// Builds a profile, uploads and attaches a license and submits it for verification.
pub async fn onboard(demo: &Demo, doctor: &DemoDoctor<'_>) -> anyhow::Result<()> {
    let command = &demo.settings.platform.command_url;
    let profile = json!({
        "display_name": doctor.name,
        "specialty": doctor.specialty,
        "license_number": format!("DE-{}", &doctor.account_id[..8]),
        "issuing_authority": "Landesärztekammer Berlin",
        "biography": "Video consultations for adults.",
        "time_zone": doctor.time_zone,
        "languages": ["en", "de"],
    });
    demo.send(
        demo.http
            .put(format!("{command}/doctors/me/profile"))
            .bearer_auth(doctor.token)
            .json(&profile),
    )
    .await?;

    let ticket = demo
        .send(
            demo.http
                .post(format!("{command}/doctors/me/license-documents/uploads"))
                .bearer_auth(doctor.token)
                .json(&json!({ "content_type": "application/pdf", "size": LICENSE_PDF.len() })),
        )
        .await?;
    let upload_url = ticket["url"]
        .as_str()
        .context("upload ticket without url")?;
    let uploaded = demo
        .http
        .put(upload_url)
        .header("content-type", "application/pdf")
        .body(LICENSE_PDF.to_vec())
        .send()
        .await?;
    expect(
        uploaded.status().is_success(),
        "the S3 store accepts the presigned upload",
    )?;
    demo.send(
        demo.http
            .post(format!("{command}/doctors/me/license-documents"))
            .bearer_auth(doctor.token)
            .json(&json!({ "object_key": ticket["object_key"] })),
    )
    .await?;

    let (days, start, end) = if doctor.around_the_clock {
        (&WEEKDAYS[..], "00:00", "24:00")
    } else {
        (&WEEKDAYS[..5], "09:00", "17:00")
    };
    let windows: Vec<Value> = days
        .iter()
        .map(|day| json!({ "weekday": day, "start": start, "end": end }))
        .collect();
    demo.send(
        demo.http
            .put(format!("{command}/doctors/me/availability"))
            .bearer_auth(doctor.token)
            .json(&json!({ "windows": windows })),
    )
    .await?;
    demo.send(
        demo.http
            .post(format!("{command}/doctors/me/submission"))
            .bearer_auth(doctor.token),
    )
    .await?;
    step(&format!(
        "{} saved a profile, uploaded a license PDF to S3 and submitted it",
        doctor.name
    ));
    Ok(())
}

/// Waits until the admin's verification queue lists the doctor; returns the entry.
async fn queued(demo: &Demo, admin: &str, doctor_id: &str) -> anyhow::Result<Value> {
    let url = format!(
        "{}/admin/doctors/verification-queue",
        demo.settings.platform.query_url
    );
    let started = Instant::now();
    loop {
        if let Some(entry) = find_in_queue(demo, admin, &url, doctor_id).await? {
            return Ok(entry);
        }
        expect(
            started.elapsed() < Duration::from_secs(15),
            "the doctor reaches the verification queue",
        )?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every page of the verification queue, oldest submission first, until one
/// lists the doctor. Earlier runs on the same database may have left many doctors
/// pending, so the doctor is often past the first page.
async fn find_in_queue(
    demo: &Demo,
    admin: &str,
    url: &str,
    doctor_id: &str,
) -> anyhow::Result<Option<Value>> {
    let mut page_url = url.to_owned();
    loop {
        let queue = demo.get(admin, &page_url).await?;
        let found = queue["doctors"].as_array().and_then(|doctors| {
            doctors
                .iter()
                .find(|entry| entry["doctor_id"] == doctor_id)
                .cloned()
        });
        if found.is_some() {
            return Ok(found);
        }
        match queue["next_cursor"].as_str() {
            Some(cursor) => page_url = format!("{url}?cursor={cursor}"),
            None => return Ok(None),
        }
    }
}

/// Has the admin read the license from S3 and approve (or reject) the doctor.
pub async fn review(
    demo: &Demo,
    admin: &str,
    doctor: &DemoDoctor<'_>,
    approve: bool,
) -> anyhow::Result<()> {
    let entry = queued(demo, admin, doctor.account_id).await?;
    let document_id = entry["documents"][0]["document_id"]
        .as_str()
        .context("queued doctor without documents")?;
    let link = demo
        .get(
            admin,
            &format!(
                "{}/admin/doctors/{}/license-documents/{document_id}/download-url",
                demo.settings.platform.query_url, doctor.account_id
            ),
        )
        .await?;
    let body = demo
        .http
        .get(link["url"].as_str().context("no download url")?)
        .send()
        .await?
        .bytes()
        .await?;
    expect(
        body.as_ref() == LICENSE_PDF,
        "the downloaded license equals the upload",
    )?;

    let base = format!(
        "{}/admin/doctors/{}",
        demo.settings.platform.command_url, doctor.account_id
    );
    if approve {
        demo.send(
            demo.http
                .post(format!("{base}/approval"))
                .bearer_auth(admin),
        )
        .await?;
        step(&format!(
            "admin downloaded {}'s license through a presigned URL and approved",
            doctor.name
        ));
    } else {
        let reason = json!({ "reason": "The license scan is not legible; upload a clearer copy." });
        demo.send(
            demo.http
                .post(format!("{base}/rejection"))
                .bearer_auth(admin)
                .json(&reason),
        )
        .await?;
        step(&format!(
            "admin downloaded {}'s license and rejected it with a reason",
            doctor.name
        ));
    }
    Ok(())
}

/// Has a patient search the directory by specialty, find the verified doctor by name
/// and list their slots.
pub async fn browse(demo: &Demo, patient: &str, doctor: &DemoDoctor<'_>) -> anyhow::Result<()> {
    let first_page = demo
        .get(
            patient,
            &format!(
                "{}/doctors?specialty={}&limit=20",
                demo.settings.platform.query_url, doctor.specialty
            ),
        )
        .await?;
    let listed = first_page["doctors"].as_array().map_or(0, Vec::len);
    let with_slot = first_page["doctors"].as_array().map_or(0, |doctors| {
        doctors
            .iter()
            .filter(|entry| !entry["next_available_slot"].is_null())
            .count()
    });
    step(&format!(
        "patient searched {}: {listed} verified doctors on the first page ({with_slot} with a free slot){}",
        doctor.specialty,
        if first_page["next_cursor"].is_null() { "" } else { ", more pages follow" }
    ));

    let url = format!(
        "{}/doctors?specialty={}&name=okafor",
        demo.settings.platform.query_url, doctor.specialty
    );
    let started = Instant::now();
    let entry = loop {
        let page = demo.get(patient, &url).await?;
        let found = page["doctors"].as_array().and_then(|doctors| {
            doctors
                .iter()
                .find(|entry| entry["doctor_id"] == doctor.account_id)
                .cloned()
        });
        if let Some(entry) = found {
            break entry;
        }
        expect(
            started.elapsed() < Duration::from_secs(15),
            "the verified doctor appears in the directory",
        )?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let next = entry["next_available_slot"]["start"]
        .as_str()
        .unwrap_or("none");
    step(&format!(
        "patient found {} in the directory; next slot {next}",
        doctor.name
    ));

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
    let count = slots["slots"].as_array().map_or(0, Vec::len);
    step(&format!(
        "{count} bookable slots in the next 7 days, in UTC with zone {}",
        slots["time_zone"]
    ));
    Ok(())
}

/// Has the rejected doctor read the reason on their own profile.
pub async fn read_rejection(demo: &Demo, doctor: &DemoDoctor<'_>) -> anyhow::Result<()> {
    let url = format!("{}/doctors/me/profile", demo.settings.platform.query_url);
    let started = Instant::now();
    loop {
        let response = demo.http.get(&url).bearer_auth(doctor.token).send().await?;
        if response.status() == StatusCode::OK {
            let profile: Value = response.json().await?;
            if profile["status"] == "rejected" {
                step(&format!(
                    "{} sees the rejection: {}",
                    doctor.name, profile["decision_reason"]
                ));
                return Ok(());
            }
        }
        expect(
            started.elapsed() < Duration::from_secs(15),
            "the rejection reaches the doctor's profile",
        )?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
