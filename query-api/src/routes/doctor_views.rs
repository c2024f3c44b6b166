//! Doctor profile rows of the read model turned into API views, personal values opened.

use chrono::{DateTime, TimeDelta, Utc};
use medflow_domain::availability::{
    BookingPolicy, DoctorSchedule, DoctorTimeZone, RawWindow, Slot, TimeRange, WeeklyAvailability,
};
use medflow_domain::doctor::LicenseDocument;
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::open;

/// Columns selected for a [`DoctorRow`], in this order.
pub const DOCTOR_COLUMNS: &str = "doctor_id, status, specialty, display_name, license_number, issuing_authority, \
     biography, time_zone, languages, documents, weekly_availability, time_off, decision_reason, submitted_at, \
     verified_at, updated_at";

/// One `doctor_profiles` row, still sealed.
pub struct DoctorRow {
    pub doctor_id: Uuid,
    pub status: String,
    pub specialty: String,
    display_name: serde_json::Value,
    license_number: serde_json::Value,
    pub issuing_authority: String,
    biography: serde_json::Value,
    pub time_zone: String,
    pub languages: Vec<String>,
    pub documents: Vec<LicenseDocument>,
    weekly: serde_json::Value,
    time_off: Vec<TimeOffEntry>,
    decision_reason: Option<serde_json::Value>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimeOffEntry {
    pub time_off_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DoctorRow {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, ApiError> {
        let documents: serde_json::Value = row.get(9);
        let time_off: serde_json::Value = row.get(11);
        Ok(Self {
            doctor_id: row.get(0),
            status: row.get(1),
            specialty: row.get(2),
            display_name: row.get(3),
            license_number: row.get(4),
            issuing_authority: row.get(5),
            biography: row.get(6),
            time_zone: row.get(7),
            languages: row.get(8),
            documents: serde_json::from_value(documents).map_err(ApiError::internal)?,
            weekly: row.get(10),
            time_off: serde_json::from_value(time_off).map_err(ApiError::internal)?,
            decision_reason: row.get(12),
            submitted_at: row.get(13),
            verified_at: row.get(14),
            updated_at: row.get(15),
        })
    }

    pub async fn display_name(&self, keys: &KeyRing) -> Result<Option<String>, ApiError> {
        open(
            keys,
            self.doctor_id,
            "doctor_display_name",
            self.display_name.clone(),
        )
        .await
    }

    pub async fn biography(&self, keys: &KeyRing) -> Result<Option<String>, ApiError> {
        open(keys, self.doctor_id, "biography", self.biography.clone()).await
    }

    pub async fn license_number(&self, keys: &KeyRing) -> Result<Option<String>, ApiError> {
        open(
            keys,
            self.doctor_id,
            "license_number",
            self.license_number.clone(),
        )
        .await
    }

    pub async fn decision_reason(&self, keys: &KeyRing) -> Result<Option<String>, ApiError> {
        let Some(sealed) = self.decision_reason.clone() else {
            return Ok(None);
        };
        // The reason was sealed under the field of the decision that set it.
        for field in ["rejection_reason", "doctor_suspension_reason"] {
            if let Ok(Some(text)) = open(keys, self.doctor_id, field, sealed.clone()).await {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    pub fn weekly_windows(&self) -> Vec<RawWindow> {
        serde_json::from_value(self.weekly.clone()).unwrap_or_default()
    }

    pub fn time_off(&self) -> &[TimeOffEntry] {
        &self.time_off
    }

    /// Rebuilds the schedule the slots come from.
    pub fn schedule(&self) -> Result<DoctorSchedule, ApiError> {
        let time_zone =
            DoctorTimeZone::parse("time_zone", &self.time_zone).map_err(ApiError::internal)?;
        let weekly: WeeklyAvailability =
            serde_json::from_value(self.weekly.clone()).map_err(ApiError::internal)?;
        let time_off = self
            .time_off
            .iter()
            .map(|entry| TimeRange::new("time_off", entry.start, entry.end))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::internal)?;
        Ok(DoctorSchedule {
            time_zone,
            weekly,
            time_off,
        })
    }
}

/// Returns the first bookable slot within the booking horizon, if any. Searches a week at
/// a time so a doctor with near slots costs little.
pub fn next_available_slot(
    schedule: &DoctorSchedule,
    booked: &[TimeRange],
    now: DateTime<Utc>,
    policy: &BookingPolicy,
) -> Result<Option<Slot>, ApiError> {
    let end = now + policy.horizon();
    let mut from = now;
    while from < end {
        let to = (from + TimeDelta::days(7)).min(end);
        let list = schedule
            .list_slots(from, to, booked, now, policy)
            .map_err(ApiError::internal)?;
        if let Some(slot) = list.slots.first() {
            return Ok(Some(*slot));
        }
        from = to;
    }
    Ok(None)
}
