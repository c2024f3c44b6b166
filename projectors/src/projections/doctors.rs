//! `doctors`: doctor profiles for the directory, the verification queue and the doctor's
//! own view. Sealed values are copied as they are; the query API opens them.

use async_trait::async_trait;
use medflow_domain::doctor::{DoctorEvent, DoctorProfile};
use medflow_infra::events::StoredEvent;
use serde_json::{json, Value};

use uuid::Uuid;

use crate::framework::ReadModelTransaction;
use crate::Projection;

pub struct DoctorsProjection;

#[async_trait]
impl Projection for DoctorsProjection {
    fn name(&self) -> &'static str {
        "doctors"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[<DoctorProfile as cqrs_es::Aggregate>::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["doctor_profiles"]
    }

    async fn apply(
        &self,
        transaction: &ReadModelTransaction<'_>,
        event: &StoredEvent,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            medflow_domain::upcasting::is_current(&event.event_type, &event.event_version),
            "unsupported {} version {}",
            event.event_type,
            event.event_version
        );
        let doctor_id = Uuid::parse_str(&event.aggregate_id)?;
        let at = event.recorded_at;
        let payload: DoctorEvent = serde_json::from_value(event.payload.clone())?;
        let (statement, value): (&str, Option<Value>) = match payload {
            DoctorEvent::ProfileUpdated { details, .. } => {
                let languages: Vec<&str> = details.languages.iter().map(|language| language.as_str()).collect();
                transaction
                    .execute(
                        "INSERT INTO doctor_profiles
                           (doctor_id, status, specialty, display_name, name_tokens, license_number,
                            issuing_authority, biography, time_zone, languages, updated_at)
                         VALUES ($1, 'draft', $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (doctor_id) DO UPDATE SET
                           specialty = EXCLUDED.specialty, display_name = EXCLUDED.display_name,
                           name_tokens = EXCLUDED.name_tokens, license_number = EXCLUDED.license_number,
                           issuing_authority = EXCLUDED.issuing_authority, biography = EXCLUDED.biography,
                           time_zone = EXCLUDED.time_zone, languages = EXCLUDED.languages,
                           updated_at = EXCLUDED.updated_at",
                        &[
                            &doctor_id,
                            &details.specialty.as_str(),
                            &serde_json::to_value(&details.display_name)?,
                            &details.name_tokens,
                            &serde_json::to_value(&details.license_number)?,
                            &details.issuing_authority,
                            &serde_json::to_value(&details.biography)?,
                            &details.time_zone.name(),
                            &languages,
                            &at,
                        ],
                    )
                    .await?;
                return Ok(());
            }
            DoctorEvent::LicenseDocumentAttached { document } => (
                "UPDATE doctor_profiles SET documents = documents || jsonb_build_array($2::jsonb), updated_at = $3
                 WHERE doctor_id = $1",
                Some(serde_json::to_value(&document)?),
            ),
            DoctorEvent::SubmittedForVerification | DoctorEvent::ReturnedForReview { .. } => (
                "UPDATE doctor_profiles SET status = 'submitted', submitted_at = $3, decision_reason = $2,
                   updated_at = $3
                 WHERE doctor_id = $1",
                None,
            ),
            DoctorEvent::DoctorVerified { .. } | DoctorEvent::DoctorReinstated { .. } => (
                "UPDATE doctor_profiles SET status = 'verified', verified_at = COALESCE(verified_at, $3),
                   decision_reason = $2, updated_at = $3
                 WHERE doctor_id = $1",
                None,
            ),
            DoctorEvent::DoctorRejected { reason, .. } => (
                "UPDATE doctor_profiles SET status = 'rejected', decision_reason = $2, updated_at = $3
                 WHERE doctor_id = $1",
                Some(serde_json::to_value(&reason)?),
            ),
            DoctorEvent::DoctorSuspended { reason, .. } => (
                "UPDATE doctor_profiles SET status = 'suspended', decision_reason = $2, updated_at = $3
                 WHERE doctor_id = $1",
                Some(serde_json::to_value(&reason)?),
            ),
            DoctorEvent::WeeklyAvailabilitySet { weekly } => (
                "UPDATE doctor_profiles SET weekly_availability = $2, updated_at = $3 WHERE doctor_id = $1",
                Some(serde_json::to_value(&weekly)?),
            ),
            DoctorEvent::TimeOffAdded { time_off_id, range } => (
                "UPDATE doctor_profiles SET time_off = time_off || jsonb_build_array($2::jsonb), updated_at = $3
                 WHERE doctor_id = $1",
                Some(json!({ "time_off_id": time_off_id, "start": range.start(), "end": range.end() })),
            ),
            DoctorEvent::TimeOffRemoved { time_off_id } => (
                "UPDATE doctor_profiles
                 SET time_off = COALESCE(
                       (SELECT jsonb_agg(entry) FROM jsonb_array_elements(time_off) AS entry
                        WHERE entry->>'time_off_id' <> ($2::jsonb)#>>'{}'),
                       '[]'::jsonb),
                     updated_at = $3
                 WHERE doctor_id = $1",
                Some(json!(time_off_id)),
            ),
        };
        let changed = transaction
            .execute(statement, &[&doctor_id, &value, &at])
            .await?;
        anyhow::ensure!(changed == 1, "doctor {doctor_id} is not in the read model");
        Ok(())
    }
}
