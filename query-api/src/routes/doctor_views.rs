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
        let weekly: WeeklyAvailability =
            serde_json::from_value(self.weekly.clone()).map_err(ApiError::internal)?;
        build_schedule(&self.time_zone, weekly, &self.time_off)
    }
}

fn build_schedule(
    time_zone: &str,
    weekly: WeeklyAvailability,
    time_off: &[TimeOffEntry],
) -> Result<DoctorSchedule, ApiError> {
    let time_zone = DoctorTimeZone::parse("time_zone", time_zone).map_err(ApiError::internal)?;
    let time_off = time_off
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

/// The columns a doctor's slots depend on, with the JSON columns as the text PostgreSQL
/// prints for them, so that an unchanged schedule is recognized without parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleColumns {
    pub time_zone: String,
    pub weekly_availability: String,
    pub time_off: String,
}

/// SQL that selects the [`ScheduleColumns`], in this order.
pub const SCHEDULE_COLUMNS: &str = "time_zone, weekly_availability::text, time_off::text";

impl ScheduleColumns {
    /// Reads the three columns starting at index `first`.
    pub fn from_row(row: &tokio_postgres::Row, first: usize) -> Self {
        Self {
            time_zone: row.get(first),
            weekly_availability: row.get(first + 1),
            time_off: row.get(first + 2),
        }
    }

    /// Parses the schedule the slots come from.
    pub fn schedule(&self) -> Result<DoctorSchedule, ApiError> {
        let weekly: WeeklyAvailability =
            serde_json::from_str(&self.weekly_availability).map_err(ApiError::internal)?;
        let time_off: Vec<TimeOffEntry> =
            serde_json::from_str(&self.time_off).map_err(ApiError::internal)?;
        build_schedule(&self.time_zone, weekly, &time_off)
    }
}

/// Columns selected for a [`DirectoryRow`], in this order.
pub const DIRECTORY_COLUMNS: &str =
    "doctor_id, specialty, display_name, biography, languages, verified_at, \
     time_zone, weekly_availability::text, time_off::text";

/// The part of a `doctor_profiles` row that the directory shows, still sealed.
pub struct DirectoryRow {
    pub doctor_id: Uuid,
    pub specialty: String,
    display_name: serde_json::Value,
    biography: serde_json::Value,
    pub languages: Vec<String>,
    pub verified_at: Option<DateTime<Utc>>,
    pub schedule: ScheduleColumns,
}

impl DirectoryRow {
    pub fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            doctor_id: row.get(0),
            specialty: row.get(1),
            display_name: row.get(2),
            biography: row.get(3),
            languages: row.get(4),
            verified_at: row.get(5),
            schedule: ScheduleColumns::from_row(row, 6),
        }
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
