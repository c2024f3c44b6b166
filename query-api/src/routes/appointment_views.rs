//! Appointment rows of the read model turned into API views.

use chrono::{DateTime, Utc};
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::web::access;
use medflow_infra::web::ApiError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::open;

/// Columns selected for an [`AppointmentView`], in this order.
pub const APPOINTMENT_COLUMNS: &str = "appointment_id, patient_id, doctor_id, starts_at, ends_at, \
     doctor_time_zone, status, cancelled_by, cancel_reason, reschedule_count, booked_at, started_at, \
     finished_at, video_started_at, video_ended_at, updated_at";

/// An appointment as shown to its patient, its doctor or an admin.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentView {
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    pub doctor_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The doctor's IANA time zone at booking time.
    pub doctor_time_zone: String,
    /// `booked`, `in_progress`, `completed`, `no_show` or `cancelled`.
    pub status: String,
    /// `patient` or `doctor`, for a cancelled appointment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// The reason given at cancellation; `null` if the patient's data key was destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    pub reschedule_count: i32,
    pub booked_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// When it was completed, cancelled or marked as a no-show.
    pub finished_at: Option<DateTime<Utc>>,
    /// First `room_started` webhook from LiveKit.
    pub video_started_at: Option<DateTime<Utc>>,
    /// Last `room_finished` webhook from LiveKit.
    pub video_ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl AppointmentView {
    /// Builds the view; opens the cancellation reason only when `with_reason` is set.
    pub async fn from_row(
        row: &tokio_postgres::Row,
        keys: &KeyRing,
        with_reason: bool,
    ) -> Result<Self, ApiError> {
        let patient_id: Uuid = row.get(1);
        // Every appointment a response carries names its patient in the access entry.
        access::patient(patient_id);
        let cancellation_reason = match row.get::<_, Option<serde_json::Value>>(8) {
            Some(sealed) if with_reason => {
                open(keys, patient_id, "appointment_cancel_reason", sealed).await?
            }
            _ => None,
        };
        Ok(Self {
            appointment_id: row.get(0),
            patient_id,
            doctor_id: row.get(2),
            start: row.get(3),
            end: row.get(4),
            doctor_time_zone: row.get(5),
            status: row.get(6),
            cancelled_by: row.get(7),
            cancellation_reason,
            reschedule_count: row.get(9),
            booked_at: row.get(10),
            started_at: row.get(11),
            finished_at: row.get(12),
            video_started_at: row.get(13),
            video_ended_at: row.get(14),
            updated_at: row.get(15),
        })
    }
}
