//! Appointments from the `appointments` projection: one appointment, a patient's list,
//! a doctor's day and the admin overview.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use medflow_domain::availability::DoctorTimeZone;
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::web::access;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::appointment_views::{AppointmentView, APPOINTMENT_COLUMNS};
use super::open;
use crate::consistency::{wait_for, WaitParams};
use crate::cursor;
use crate::query_params::{optional_instant, page_size};
use crate::state::SharedState;

const PROJECTION: &str = "appointments";
const AGGREGATE_TYPE: &str = "appointment";
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;
/// Maximum range of the admin overview, in days.
const MAX_OVERVIEW_DAYS: i64 = 366;
const STATUSES: &[&str] = &["booked", "in_progress", "completed", "no_show", "cancelled"];

#[utoipa::path(
    get,
    path = "/appointments/{appointment_id}",
    tag = "appointments",
    params(("appointment_id" = Uuid, Path, description = "An appointment of the caller"), WaitParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The appointment", body = AppointmentView),
        (status = 403, description = "The caller's role can never read an appointment (only patients, doctors and admins can)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id that the caller may read, or not projected yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id or a wait parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach wait_for_sequence in time", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn appointment(
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    wait: web::Query<WaitParams>,
) -> Result<HttpResponse, ApiError> {
    // Checked before the appointment is loaded, so the refusal names no patient.
    auth.require_role(&[Role::Patient, Role::Doctor, Role::Admin])?;
    let appointment_id = Uuid::parse_str(&path).map_err(|_| {
        FieldError::new(
            "appointment_id",
            format!("'{}' is not a valid UUID", truncate(&path, 40)),
        )
    })?;
    access::target("appointment", appointment_id);
    if let Some((sequence, timeout)) = wait.parse(state.max_wait_ms)? {
        wait_for(
            &state.pool,
            PROJECTION,
            AGGREGATE_TYPE,
            &appointment_id.to_string(),
            sequence,
            timeout,
        )
        .await?;
    }
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            &format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = $1"),
            &[&appointment_id],
        )
        .await
        .map_err(ApiError::internal)?;
    let caller = auth.session.account_id.0;
    let not_found = || ApiError::NotFound(format!("appointment {appointment_id} not found"));
    let row = row.ok_or_else(not_found)?;
    let is_party = row.get::<_, Uuid>(1) == caller || row.get::<_, Uuid>(2) == caller;
    if !is_party && auth.session.role != Role::Admin {
        access::patient(row.get(1));
        access::denied();
        return Err(not_found());
    }
    let view = AppointmentView::from_row(&row, &state.keys, is_party).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PatientListParams {
    /// Only appointments in this status: `booked`, `in_progress`, `completed`, `no_show`
    /// or `cancelled`.
    pub status: Option<String>,
    /// Only appointments starting at or after this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Only appointments starting before this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentPage {
    pub appointments: Vec<AppointmentView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/patients/me/appointments",
    tag = "appointments",
    params(PatientListParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The calling patient's appointments, earliest start first", body = AppointmentPage),
        (status = 403, description = "Caller is not a patient", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patient_appointments(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<PatientListParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Patient])?;
    access::target("patient", auth.session.account_id);
    access::patient(auth.session.account_id.0);
    let mut errors = Vec::new();
    let status = params.status.as_deref().and_then(|raw| {
        if STATUSES.contains(&raw) {
            Some(raw.to_owned())
        } else {
            errors.push(FieldError::new(
                "status",
                format!(
                    "'{}' is not one of {}",
                    truncate(raw, 40),
                    STATUSES.join(", ")
                ),
            ));
            None
        }
    });
    let from = optional_instant(&mut errors, "from", params.from.as_deref());
    let to = optional_instant(&mut errors, "to", params.to.as_deref());
    let limit = page_size(
        &mut errors,
        params.limit.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    );
    let after = params.cursor.as_deref().and_then(|raw| {
        let decoded = cursor::decode(raw);
        if decoded.is_none() {
            errors.push(FieldError::new(
                "cursor",
                format!("'{}' is not a cursor from this API", truncate(raw, 40)),
            ));
        }
        decoded
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let patient = auth.session.account_id.0;
    let mut conditions = vec!["patient_id = $1".to_owned()];
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(patient)];
    if let Some(status) = status {
        values.push(Box::new(status));
        conditions.push(format!("status = ${}", values.len()));
    }
    if let Some(from) = from {
        values.push(Box::new(from));
        conditions.push(format!("starts_at >= ${}", values.len()));
    }
    if let Some(to) = to {
        values.push(Box::new(to));
        conditions.push(format!("starts_at < ${}", values.len()));
    }
    if let Some((at, id)) = after {
        values.push(Box::new(at));
        values.push(Box::new(id));
        conditions.push(format!(
            "(starts_at, appointment_id) > (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(Box::new(limit + 1));
    let query = format!(
        "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE {} ORDER BY starts_at, appointment_id LIMIT ${}",
        conditions.join(" AND "),
        values.len()
    );
    let parameters: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let rows = client
        .query(&query, &parameters)
        .await
        .map_err(ApiError::internal)?;

    let has_more = rows.len() as i64 > limit;
    let mut appointments = Vec::new();
    for row in rows.iter().take(limit as usize) {
        appointments.push(AppointmentView::from_row(row, &state.keys, true).await?);
    }
    let next_cursor = match (has_more, appointments.last()) {
        (true, Some(last)) => Some(cursor::encode(last.start, last.appointment_id)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(AppointmentPage {
        appointments,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScheduleParams {
    /// The day in the doctor's own time zone, as `YYYY-MM-DD`.
    #[param(value_type = String, format = Date)]
    pub date: Option<String>,
    /// Also list cancelled appointments (`true` or `false`, default `false`).
    #[param(value_type = Option<bool>)]
    pub include_cancelled: Option<String>,
}

/// An appointment on the doctor's schedule, with the patient's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleEntry {
    #[serde(flatten)]
    pub appointment: AppointmentView,
    /// `null` if the patient's data key was destroyed.
    pub patient_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DaySchedule {
    pub date: NaiveDate,
    /// The doctor's current IANA time zone, which `date` is read in.
    pub time_zone: String,
    /// First instant of the local day.
    pub from: DateTime<Utc>,
    /// First instant of the next local day.
    pub to: DateTime<Utc>,
    pub appointments: Vec<ScheduleEntry>,
}

#[utoipa::path(
    get,
    path = "/doctors/me/schedule",
    tag = "appointments",
    params(ScheduleParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The calling doctor's appointments on one local day, earliest first", body = DaySchedule),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has no profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "date is missing or invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn doctor_schedule(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<ScheduleParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Doctor])?;
    let raw_date = params
        .date
        .as_deref()
        .ok_or_else(|| FieldError::new("date", "is required, as YYYY-MM-DD"))?;
    let date = NaiveDate::parse_from_str(raw_date, "%Y-%m-%d").map_err(|_| {
        FieldError::new(
            "date",
            format!("'{}' is not a date as YYYY-MM-DD", truncate(raw_date, 40)),
        )
    })?;
    let include_cancelled = match params.include_cancelled.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(raw) => {
            return Err(FieldError::new(
                "include_cancelled",
                format!("'{}' is not true or false", truncate(raw, 40)),
            )
            .into())
        }
    };

    let doctor = auth.session.account_id.0;
    access::target("doctor_schedule", doctor);
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let zone_name: String = client
        .query_opt(
            "SELECT time_zone FROM doctor_profiles WHERE doctor_id = $1",
            &[&doctor],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::NotFound(
                "no doctor profile yet; save it with PUT /doctors/me/profile".to_owned(),
            )
        })?
        .get(0);
    let zone = DoctorTimeZone::parse("time_zone", &zone_name).map_err(ApiError::internal)?;
    let (from, to) = local_day(zone, date)?;

    let rows = client
        .query(
            &format!(
                "SELECT {APPOINTMENT_COLUMNS},
                   (SELECT name FROM account_directory WHERE account_id = appointments.patient_id)
                 FROM appointments
                 WHERE doctor_id = $1 AND starts_at < $3 AND ends_at > $2
                   AND ($4 OR status <> 'cancelled')
                 ORDER BY starts_at, appointment_id"
            ),
            &[&doctor, &from, &to, &include_cancelled],
        )
        .await
        .map_err(ApiError::internal)?;
    let mut appointments = Vec::new();
    for row in &rows {
        let appointment = AppointmentView::from_row(row, &state.keys, true).await?;
        let patient_name = match row.get::<_, Option<serde_json::Value>>(16) {
            Some(sealed) => open(&state.keys, appointment.patient_id, "name", sealed).await?,
            None => None,
        };
        appointments.push(ScheduleEntry {
            appointment,
            patient_name,
        });
    }
    Ok(HttpResponse::Ok().json(DaySchedule {
        date,
        time_zone: zone_name,
        from,
        to,
        appointments,
    }))
}

/// Returns the first instants of `date` and of the next day in `zone`. Where a
/// daylight-saving switch skips local midnight, the day starts at the first local time
/// that exists.
fn local_day(
    zone: DoctorTimeZone,
    date: NaiveDate,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let next = date
        .checked_add_days(Days::new(1))
        .ok_or_else(|| FieldError::new("date", "is out of range"))?;
    Ok((start_of_day(zone, date)?, start_of_day(zone, next)?))
}

fn start_of_day(zone: DoctorTimeZone, date: NaiveDate) -> Result<DateTime<Utc>, ApiError> {
    let tz = zone.tz();
    // Daylight-saving gaps last at most a few hours, so some minute of the first day's
    // hours exists.
    for minutes in (0..=180).step_by(15) {
        let local = date.and_time(NaiveTime::MIN) + TimeDelta::minutes(minutes);
        if let Some(instant) = tz.from_local_datetime(&local).earliest() {
            return Ok(instant.with_timezone(&Utc));
        }
    }
    Err(FieldError::new("date", "has no start in the doctor's time zone").into())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OverviewParams {
    /// Start of the range, RFC 3339 (default: today 00:00 UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End of the range, RFC 3339 (default: 7 days after `from`), at most 366 days after it.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCounts {
    /// UTC day of the appointment start.
    pub date: NaiveDate,
    /// Appointments per status.
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentOverview {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Appointments starting in the range.
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    /// Doctors with at least one appointment in the range.
    pub doctors: i64,
    /// Patients with at least one appointment in the range.
    pub patients: i64,
    pub days: Vec<DayCounts>,
}

#[utoipa::path(
    get,
    path = "/admin/appointments/overview",
    tag = "admin",
    params(OverviewParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Counts of appointments starting in the range", body = AppointmentOverview),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "from or to is invalid, or the range is longer than 366 days", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn admin_overview(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<OverviewParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let mut errors = Vec::new();
    let from = optional_instant(&mut errors, "from", params.from.as_deref());
    let to = optional_instant(&mut errors, "to", params.to.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let from = from.unwrap_or_else(|| {
        state
            .clock
            .now()
            .date_naive()
            .and_time(NaiveTime::MIN)
            .and_utc()
    });
    let to = to.unwrap_or(from + TimeDelta::days(7));
    if to <= from {
        return Err(FieldError::new("to", "must be after from").into());
    }
    if to - from > TimeDelta::days(MAX_OVERVIEW_DAYS) {
        return Err(FieldError::new(
            "to",
            format!("makes the range longer than {MAX_OVERVIEW_DAYS} days; choose a shorter range"),
        )
        .into());
    }

    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let totals = client
        .query_one(
            "SELECT count(*), count(DISTINCT doctor_id), count(DISTINCT patient_id)
             FROM appointments WHERE starts_at >= $1 AND starts_at < $2",
            &[&from, &to],
        )
        .await
        .map_err(ApiError::internal)?;
    let rows = client
        .query(
            "SELECT (starts_at AT TIME ZONE 'UTC')::date AS day, status, count(*)
             FROM appointments WHERE starts_at >= $1 AND starts_at < $2
             GROUP BY day, status ORDER BY day, status",
            &[&from, &to],
        )
        .await
        .map_err(ApiError::internal)?;
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    let mut days: BTreeMap<NaiveDate, BTreeMap<String, i64>> = BTreeMap::new();
    for row in rows {
        let status: String = row.get(1);
        let count: i64 = row.get(2);
        *by_status.entry(status.clone()).or_default() += count;
        days.entry(row.get(0)).or_default().insert(status, count);
    }
    Ok(HttpResponse::Ok().json(AppointmentOverview {
        from,
        to,
        total: totals.get(0),
        by_status,
        doctors: totals.get(1),
        patients: totals.get(2),
        days: days
            .into_iter()
            .map(|(date, by_status)| DayCounts { date, by_status })
            .collect(),
    }))
}
