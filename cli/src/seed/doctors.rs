//! Doctor phases: onboarding with a license PDF uploaded through a presigned URL, the
//! admin's review (download, compare, approve or reject) and the later suspensions.

use std::collections::HashSet;
use std::time::Instant;

use rand::seq::SliceRandom;
use serde_json::{json, Value};

use super::client::{Endpoint, RequestFailed, Session};
use super::dataset::{self, item_rng, Stream};
use super::progress::PhaseTiming;
use super::{for_each_bounded, Seeder, POLL_INTERVAL};
use crate::http::rfc3339;

/// Maximum wait for submitted doctors to appear in the verification queue.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The admin's planned decision on a doctor's submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// Approve now, suspend after the bookings.
    ApproveThenSuspend,
    Reject,
    /// Submitted but never reviewed.
    Leave,
}

/// Final status of a seeded doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DoctorStatus {
    Verified,
    Suspended,
    Rejected,
    /// Submitted and waiting for review.
    Submitted,
    /// A request of the onboarding or the review failed.
    Failed,
}

impl DoctorStatus {
    pub fn label(self) -> &'static str {
        match self {
            DoctorStatus::Verified => "verified",
            DoctorStatus::Suspended => "suspended",
            DoctorStatus::Rejected => "rejected",
            DoctorStatus::Submitted => "submitted, not reviewed",
            DoctorStatus::Failed => "failed",
        }
    }
}

/// A doctor that completed onboarding.
pub struct SeededDoctor {
    pub session: Session,
    pub specialty: &'static str,
    pub time_zone: &'static str,
    document_id: String,
    license_pdf: Vec<u8>,
    decision: Decision,
}

impl SeededDoctor {
    pub fn account_id(&self) -> &str {
        &self.session.account_id
    }
}

/// The admin's review: one outcome per onboarded doctor, in the same order.
pub struct Review {
    outcomes: Vec<DoctorStatus>,
    /// Downloaded licenses whose bytes differ from the upload.
    pub license_mismatches: u64,
}

/// Plans the review of `count` doctors: about 85 % approved (of all doctors, 3 % are
/// suspended later), 5 % rejected and 10 % left waiting. From four doctors on, each group
/// has at least one member, and fewer doctors are all approved.
fn plan_decisions(count: usize, seed: u64) -> Vec<Decision> {
    let mut decisions = vec![Decision::Approve; count];
    if count < 4 {
        return decisions;
    }
    let share = |percent: f64| ((count as f64 * percent / 100.0).round() as usize).max(1);
    let mut order: Vec<usize> = (0..count).collect();
    order.shuffle(&mut item_rng(seed, Stream::Review, 0));
    let rejected = share(5.0);
    let left = share(10.0);
    let suspended = share(3.0);
    let mut positions = order.into_iter();
    for (decision, amount) in [
        (Decision::Reject, rejected),
        (Decision::Leave, left),
        (Decision::ApproveThenSuspend, suspended),
    ] {
        for index in positions.by_ref().take(amount) {
            decisions[index] = decision;
        }
    }
    decisions
}

/// Registers, logs in and onboards every doctor; returns those that completed.
pub async fn onboard_all(seeder: &Seeder) -> (Vec<SeededDoctor>, PhaseTiming) {
    let count = seeder.settings.doctors;
    let decisions = plan_decisions(count, seeder.random_seed);
    let phase = seeder.progress.phase("doctors", count as u64);
    let results = for_each_bounded(
        decisions.into_iter().enumerate(),
        seeder.concurrency(),
        &phase,
        |(index, decision)| onboard(seeder, index, decision),
    )
    .await;
    let mut doctors: Vec<(usize, SeededDoctor)> = results.into_iter().flatten().collect();
    doctors.sort_by_key(|(index, _)| *index);
    let doctors = doctors.into_iter().map(|(_, doctor)| doctor).collect();
    (doctors, phase.finish())
}

async fn onboard(
    seeder: &Seeder,
    index: usize,
    decision: Decision,
) -> Option<(usize, SeededDoctor)> {
    let profile = dataset::doctor_profile(
        seeder.random_seed,
        index,
        &seeder.run,
        seeder.now,
        seeder.settings.weeks,
    );
    let client = &seeder.client;
    client
        .register("doctor", &profile.identity.email, &profile.identity.name)
        .await
        .ok()?;
    let session = client
        .login(&profile.identity.email, super::SEEDED_PASSWORD)
        .await
        .ok()?;
    let license_pdf = license_pdf(&profile.license_number);
    let document_id = build_profile(seeder, &session, &profile, &license_pdf)
        .await
        .ok()?;
    Some((
        index,
        SeededDoctor {
            session,
            specialty: profile.specialty,
            time_zone: profile.time_zone,
            document_id,
            license_pdf,
            decision,
        },
    ))
}

/// Builds a small PDF that stands in for a scanned license.
fn license_pdf(license_number: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% MedFlow seeded license scan {license_number}\n%%EOF\n").into_bytes()
}

/// Saves the profile, weekly windows and time off, uploads and attaches the license and
/// submits the profile; returns the attached document's id.
async fn build_profile(
    seeder: &Seeder,
    session: &Session,
    profile: &dataset::DoctorProfile,
    license_pdf: &[u8],
) -> Result<String, RequestFailed> {
    let client = &seeder.client;
    let http = client.http();
    let command = &seeder.settings.platform.command_url;

    let body = json!({
        "display_name": profile.display_name,
        "specialty": profile.specialty,
        "license_number": profile.license_number,
        "issuing_authority": profile.issuing_authority,
        "biography": profile.biography,
        "time_zone": profile.time_zone,
        "languages": profile.languages,
    });
    let url = format!("{command}/doctors/me/profile");
    client
        .send_as(session, Endpoint::DoctorProfile, &[], || {
            http.put(&url).json(&body)
        })
        .await?;

    let windows: Vec<Value> = profile
        .windows
        .iter()
        .map(|window| {
            json!({ "weekday": window.weekday, "start": window.start_text(), "end": window.end_text() })
        })
        .collect();
    let url = format!("{command}/doctors/me/availability");
    let body = json!({ "windows": windows });
    client
        .send_as(session, Endpoint::Availability, &[], || {
            http.put(&url).json(&body)
        })
        .await?;

    let url = format!("{command}/doctors/me/time-off");
    for (start, end) in &profile.time_off {
        let body = json!({ "start": rfc3339(*start), "end": rfc3339(*end) });
        client
            .send_as(session, Endpoint::TimeOff, &[], || {
                http.post(&url).json(&body)
            })
            .await?;
    }

    let document_id = upload_license(seeder, session, license_pdf).await?;

    let url = format!("{command}/doctors/me/submission");
    client
        .send_as(session, Endpoint::Submission, &[], || http.post(&url))
        .await?;
    Ok(document_id)
}

/// Asks for a presigned upload, sends the PDF straight to the S3 store and attaches it;
/// returns the document id.
async fn upload_license(
    seeder: &Seeder,
    session: &Session,
    license_pdf: &[u8],
) -> Result<String, RequestFailed> {
    let client = &seeder.client;
    let http = client.http();
    let command = &seeder.settings.platform.command_url;

    let url = format!("{command}/doctors/me/license-documents/uploads");
    let body = json!({ "content_type": "application/pdf", "size": license_pdf.len() });
    let ticket = client
        .send_as(session, Endpoint::UploadTicket, &[], || {
            http.post(&url).json(&body)
        })
        .await?;
    let ticket = ticket.json();
    let upload_url = ticket["url"].as_str().ok_or(RequestFailed)?;
    let headers: Vec<(String, String)> = ticket["headers"]
        .as_object()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    client
        .send(Endpoint::ObjectUpload, &[], || {
            let mut request = http.put(upload_url).body(license_pdf.to_vec());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            if !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            {
                request = request.header("content-type", "application/pdf");
            }
            request
        })
        .await?;

    let url = format!("{command}/doctors/me/license-documents");
    let body = json!({ "object_key": ticket["object_key"] });
    let attached = client
        .send_as(session, Endpoint::AttachDocument, &[], || {
            http.post(&url).json(&body)
        })
        .await?;
    attached.json()["document_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(RequestFailed)
}

/// Has the admin wait for the submissions in the verification queue, then download each
/// license to be decided through a presigned URL, compare it with the upload and approve
/// or reject.
pub async fn review_all(
    seeder: &Seeder,
    admin: &Session,
    doctors: &[SeededDoctor],
) -> (Review, PhaseTiming) {
    wait_for_queue(seeder, admin, doctors).await;
    let phase = seeder.progress.phase("review", doctors.len() as u64);
    let results =
        for_each_bounded(
            doctors.iter().enumerate(),
            seeder.concurrency(),
            &phase,
            |(position, doctor)| async move {
                (position, review(seeder, admin, position, doctor).await)
            },
        )
        .await;
    let mut review = Review {
        outcomes: vec![DoctorStatus::Failed; doctors.len()],
        license_mismatches: 0,
    };
    for (position, outcome) in results {
        match outcome {
            Ok(Reviewed::Decided(status)) => review.outcomes[position] = status,
            Ok(Reviewed::LicenseMismatch) => review.license_mismatches += 1,
            Err(RequestFailed) => {}
        }
    }
    if review.license_mismatches > 0 {
        seeder.progress.note(&format!(
            "{} downloaded licenses differ from their upload",
            review.license_mismatches
        ));
    }
    (review, phase.finish())
}

/// Pages through the verification queue, where an admin finds the submissions, until it
/// lists every seeded doctor or [`QUEUE_WAIT`] has passed.
async fn wait_for_queue(seeder: &Seeder, admin: &Session, doctors: &[SeededDoctor]) {
    let mut waiting: HashSet<&str> = doctors.iter().map(SeededDoctor::account_id).collect();
    let started = Instant::now();
    let http = seeder.client.http();
    let base = format!(
        "{}/admin/doctors/verification-queue",
        seeder.settings.platform.query_url
    );
    while !waiting.is_empty() {
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(cursor) => format!("{base}?cursor={cursor}"),
                None => base.clone(),
            };
            let Ok(page) = seeder
                .client
                .send_as(admin, Endpoint::VerificationQueue, &[], || http.get(&url))
                .await
            else {
                return;
            };
            let page = page.json();
            for entry in page["doctors"].as_array().into_iter().flatten() {
                if let Some(id) = entry["doctor_id"].as_str() {
                    waiting.remove(id);
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) if !waiting.is_empty() => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        if waiting.is_empty() {
            return;
        }
        if started.elapsed() > QUEUE_WAIT {
            seeder.progress.note(&format!(
                "{} submitted doctors did not reach the verification queue within {} s",
                waiting.len(),
                QUEUE_WAIT.as_secs()
            ));
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

enum Reviewed {
    Decided(DoctorStatus),
    LicenseMismatch,
}

async fn review(
    seeder: &Seeder,
    admin: &Session,
    position: usize,
    doctor: &SeededDoctor,
) -> Result<Reviewed, RequestFailed> {
    if doctor.decision == Decision::Leave {
        return Ok(Reviewed::Decided(DoctorStatus::Submitted));
    }
    let client = &seeder.client;
    let http = client.http();
    let url = format!(
        "{}/admin/doctors/{}/license-documents/{}/download-url",
        seeder.settings.platform.query_url,
        doctor.account_id(),
        doctor.document_id
    );
    let link = client
        .send_as(admin, Endpoint::DownloadUrl, &[], || http.get(&url))
        .await?;
    let download_url = link.json()["url"].as_str().ok_or(RequestFailed)?;
    let download = client
        .send(Endpoint::ObjectDownload, &[], || http.get(download_url))
        .await?;
    if download.bytes != doctor.license_pdf {
        return Ok(Reviewed::LicenseMismatch);
    }

    let base = format!(
        "{}/admin/doctors/{}",
        seeder.settings.platform.command_url,
        doctor.account_id()
    );
    if doctor.decision == Decision::Reject {
        let reasons = dataset::REJECTION_REASONS;
        let reason = reasons[position % reasons.len()];
        let url = format!("{base}/rejection");
        let body = json!({ "reason": reason });
        client
            .send_as(admin, Endpoint::Rejection, &[], || {
                http.post(&url).json(&body)
            })
            .await?;
        return Ok(Reviewed::Decided(DoctorStatus::Rejected));
    }
    let url = format!("{base}/approval");
    client
        .send_as(admin, Endpoint::Approval, &[], || http.post(&url))
        .await?;
    Ok(Reviewed::Decided(DoctorStatus::Verified))
}

/// Positions of the approved doctors, which patients can book until some are suspended.
pub fn bookable(doctors: &[SeededDoctor], review: &Review) -> Vec<usize> {
    (0..doctors.len())
        .filter(|&position| review.outcomes[position] == DoctorStatus::Verified)
        .collect()
}

/// Has the admin suspend the approved doctors picked for it; returns the positions of
/// those suspended.
pub async fn suspend_some(
    seeder: &Seeder,
    admin: &Session,
    doctors: &[SeededDoctor],
    review: &Review,
) -> (Vec<usize>, PhaseTiming) {
    let picked: Vec<usize> = bookable(doctors, review)
        .into_iter()
        .filter(|&position| doctors[position].decision == Decision::ApproveThenSuspend)
        .collect();
    let phase = seeder.progress.phase("suspensions", picked.len() as u64);
    let http = seeder.client.http();
    let results = for_each_bounded(
        picked.into_iter().enumerate(),
        seeder.concurrency(),
        &phase,
        |(number, position)| async move {
            let reasons = dataset::SUSPENSION_REASONS;
            let body = json!({ "reason": reasons[number % reasons.len()] });
            let url = format!(
                "{}/admin/doctors/{}/suspension",
                seeder.settings.platform.command_url,
                doctors[position].account_id()
            );
            let outcome = seeder
                .client
                .send_as(admin, Endpoint::DoctorSuspension, &[], || {
                    http.post(&url).json(&body)
                })
                .await;
            outcome.ok().map(|_| position)
        },
    )
    .await;
    let suspended = results.into_iter().flatten().collect();
    (suspended, phase.finish())
}

/// Final status of every seeded doctor, onboarded or not, with the account id where one
/// exists.
pub fn final_statuses(
    seeder: &Seeder,
    doctors: &[SeededDoctor],
    review: &Review,
    suspended: &[usize],
) -> Vec<(Option<String>, DoctorStatus)> {
    let mut statuses: Vec<(Option<String>, DoctorStatus)> = doctors
        .iter()
        .enumerate()
        .map(|(position, doctor)| {
            let status = if suspended.contains(&position) {
                DoctorStatus::Suspended
            } else {
                review.outcomes[position]
            };
            (Some(doctor.account_id().to_owned()), status)
        })
        .collect();
    let failed = seeder.settings.doctors.saturating_sub(doctors.len());
    statuses.extend(std::iter::repeat_n((None, DoctorStatus::Failed), failed));
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(decisions: &[Decision], decision: Decision) -> usize {
        decisions.iter().filter(|each| **each == decision).count()
    }

    #[test]
    fn plan_for_200_doctors() {
        let decisions = plan_decisions(200, 1);
        assert_eq!(count(&decisions, Decision::Approve), 164);
        assert_eq!(count(&decisions, Decision::ApproveThenSuspend), 6);
        assert_eq!(count(&decisions, Decision::Reject), 10);
        assert_eq!(count(&decisions, Decision::Leave), 20);
    }

    #[test]
    fn plan_for_6_doctors_has_every_decision() {
        let decisions = plan_decisions(6, 1);
        assert_eq!(count(&decisions, Decision::Approve), 3);
        assert_eq!(count(&decisions, Decision::ApproveThenSuspend), 1);
        assert_eq!(count(&decisions, Decision::Reject), 1);
        assert_eq!(count(&decisions, Decision::Leave), 1);
    }

    #[test]
    fn plan_for_3_doctors_approves_all() {
        let decisions = plan_decisions(3, 1);
        assert_eq!(count(&decisions, Decision::Approve), 3);
    }
}
