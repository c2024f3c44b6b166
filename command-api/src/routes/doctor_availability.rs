//! The doctor's weekly availability (`PUT /doctors/me/availability`) and time off
//! (`POST /doctors/me/time-off`, `DELETE /doctors/me/time-off/{time_off_id}`).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, TimeDelta, Utc};
use medflow_domain::availability::{RawWindow, TimeRange, WeeklyAvailability};
use medflow_domain::doctor::DoctorCommand;
use medflow_domain::values::truncate;
use medflow_domain::FieldError;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::doctors::{execute, require_doctor};
use super::{metadata, record_aggregate, CommandAccepted};
use crate::error::from_doctor_transaction_error;
use crate::reservations::TimeOffEffects;
use crate::state::SharedState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityRequest {
    /// The whole week; it replaces the previous availability. An empty list means the
    /// doctor is never available. Windows must not overlap.
    pub windows: Vec<WindowRequest>,
}

/// A window of local time in the doctor's time zone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// Full lower-case English weekday name, such as `monday`.
    pub weekday: String,
    /// Local start time as `HH:MM`, such as `09:00`.
    pub start: String,
    /// Local end time as `HH:MM`. An end before the start runs past midnight into the
    /// next day, as in 22:30 to 02:00; `24:00` ends at midnight. A window lasts at
    /// least 30 minutes.
    pub end: String,
}

const WINDOW_FIELDS: &[Field] = &[
    Field::required("weekday", JsonKind::String),
    Field::required("start", JsonKind::String),
    Field::required("end", JsonKind::String),
];

impl RequestBody for AvailabilityRequest {
    const FIELDS: &'static [Field] = &[Field::required(
        "windows",
        JsonKind::Array(&JsonKind::Object(WINDOW_FIELDS)),
    )];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeOffRequest {
    /// Start as an RFC 3339 timestamp with offset, such as `2026-12-24T00:00:00Z`.
    pub start: String,
    /// End as an RFC 3339 timestamp with offset; must be after the start.
    pub end: String,
}

impl RequestBody for TimeOffRequest {
    const FIELDS: &'static [Field] = &[
        Field::required("start", JsonKind::String),
        Field::required("end", JsonKind::String),
    ];
}

/// Response to added time off.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeOffAdded {
    /// Id of the doctor profile, which is the doctor's account id.
    pub aggregate_id: String,
    /// Sequence of the profile's last event; pass it to the query API to read your
    /// own write.
    pub sequence: u64,
    /// Id for removing this time off again.
    pub time_off_id: Uuid,
    /// Ids of booked appointments that overlap the time off. Time off never cancels
    /// them; the doctor or an admin decides what happens to each.
    pub affected_appointments: Vec<Uuid>,
}

/// Parses the time off range. `TimeRange::parse` names its errors `<prefix>.start`
/// and `<prefix>.end`, but here `start` and `end` are top-level fields of the body.
/// The range must also end in the future and last at most [`TIME_OFF_MAX_DAYS`]: past
/// time off changes nothing, and endless ranges would hide a doctor without a trace.
fn parse_time_off(start: &str, end: &str, now: DateTime<Utc>) -> Result<TimeRange, FieldError> {
    const PREFIX: &str = "time_off";
    let range = TimeRange::parse(PREFIX, start, end).map_err(|mut error| {
        if let Some(field) = error.field.strip_prefix(&format!("{PREFIX}.")) {
            error.field = field.to_owned();
        }
        error
    })?;
    if range.end() <= now {
        return Err(FieldError::new(
            "end",
            "lies in the past; time off must end in the future",
        ));
    }
    if range.end() - range.start() > TimeDelta::days(TIME_OFF_MAX_DAYS) {
        return Err(FieldError::new(
            "end",
            format!("makes the time off longer than {TIME_OFF_MAX_DAYS} days; split it or suspend availability instead"),
        ));
    }
    Ok(range)
}

/// Maximum length of one time-off range, in days.
pub const TIME_OFF_MAX_DAYS: i64 = 366;

#[utoipa::path(
    put,
    path = "/doctors/me/availability",
    tag = "doctors",
    request_body = AvailabilityRequest,
    security(("session" = [])),
    responses(
        (status = 200, description = "Weekly availability replaced", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has not saved a profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent request changed the profile", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A window is malformed or overlaps another; the problem names it as windows[i]", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_availability(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<AvailabilityRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let raw: Vec<RawWindow> = body
        .windows
        .iter()
        .map(|window| RawWindow::new(&window.weekday, &window.start, &window.end))
        .collect();
    let weekly = WeeklyAvailability::parse("windows", &raw)?;
    let command = DoctorCommand::SetWeeklyAvailability { weekly };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(
        doctor_id = %doctor,
        sequence = committed.sequence,
        windows = raw.len(),
        "weekly availability set"
    );
    Ok(HttpResponse::Ok().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/doctors/me/time-off",
    tag = "doctors",
    request_body = TimeOffRequest,
    security(("session" = [])),
    responses(
        (status = 201, description = "Time off added. Slots inside it are no longer offered; existing bookings stay and are listed in `affected_appointments`", body = TimeOffAdded),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has not saved a profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile already contains the maximum number of time-off entries, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A timestamp is malformed, or the end is not after the start", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_time_off(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<TimeOffRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let range = parse_time_off(&body.start, &body.end, state.clock.now())?;
    let time_off_id = Uuid::new_v4();
    let command = DoctorCommand::AddTimeOff { time_off_id, range };
    let effects = TimeOffEffects {
        doctor,
        range,
        affected: Default::default(),
    };
    let doctor_id = doctor.to_string();
    record_aggregate(&request, &doctor_id);
    let committed = state
        .doctors
        .execute_with(&doctor_id, command, metadata(Some(&auth.session)), &effects)
        .await
        .map_err(from_doctor_transaction_error)?;
    let affected_appointments = effects
        .affected
        .into_inner()
        .map_err(|_| ApiError::internal(anyhow::anyhow!("affected list lock poisoned")))?;
    tracing::info!(
        doctor_id = %doctor,
        %time_off_id,
        sequence = committed.sequence,
        "time off added"
    );
    Ok(HttpResponse::Created().json(TimeOffAdded {
        aggregate_id: committed.aggregate_id,
        sequence: committed.sequence as u64,
        time_off_id,
        affected_appointments,
    }))
}

#[utoipa::path(
    delete,
    path = "/doctors/me/time-off/{time_off_id}",
    tag = "doctors",
    params(("time_off_id" = Uuid, Path, description = "Id returned when the time off was added")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Time off removed", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile, or no time off with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent request changed the profile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The time-off id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove_time_off(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let time_off_id = Uuid::parse_str(&path).map_err(|_| {
        ApiError::field(
            "time_off_id",
            format!("'{}' is not a valid UUID", truncate(&path, 40)),
        )
    })?;
    let command = DoctorCommand::RemoveTimeOff { time_off_id };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(
        doctor_id = %doctor,
        %time_off_id,
        sequence = committed.sequence,
        "time off removed"
    );
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn time_off_errors_name_body_fields() {
        let error =
            parse_time_off("2026-05-02T10:00:00Z", "2026-05-02T09:00:00Z", now()).unwrap_err();
        assert_eq!(error.field, "end");
        let error = parse_time_off("tomorrow", "2026-05-02T09:00:00Z", now()).unwrap_err();
        assert_eq!(error.field, "start");
    }

    #[test]
    fn time_off_range_is_bounded() {
        let past =
            parse_time_off("2026-04-01T00:00:00Z", "2026-04-02T00:00:00Z", now()).unwrap_err();
        assert!(past.detail.contains("in the past"), "{}", past.detail);
        let long =
            parse_time_off("2026-05-02T00:00:00Z", "2027-06-01T00:00:00Z", now()).unwrap_err();
        assert!(
            long.detail.contains("longer than 366 days"),
            "{}",
            long.detail
        );
        assert!(parse_time_off("2026-05-02T00:00:00Z", "2026-05-03T00:00:00Z", now()).is_ok());
    }
}
