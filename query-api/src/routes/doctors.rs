//! The doctor directory, slot listing and the doctor's own profile, from the `doctors`
//! projection.

use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use medflow_domain::availability::{BookingPolicy, RawWindow, Slot, SlotList};
use medflow_domain::doctor::{Language, LicenseDocument, Specialty};
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::bookings::{booked_ranges, booked_ranges_until};
use super::doctor_views::{
    DirectoryRow, DoctorRow, ScheduleColumns, TimeOffEntry, DIRECTORY_COLUMNS, DOCTOR_COLUMNS,
    SCHEDULE_COLUMNS,
};
use crate::consistency::{wait_for, WaitParams};
use crate::cursor;
use crate::directory_cache::{self, PageKey};
use crate::doctor_cache::{CachedDoctor, NextSlotLookup};
use crate::state::{AppState, SharedState};

const PROJECTION: &str = "doctors";
const AGGREGATE_TYPE: &str = "doctor";
pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DirectoryParams {
    /// Only doctors of this specialty, such as `cardiology`.
    pub specialty: Option<String>,
    /// Only doctors whose display name contains all these words (whole words, any case).
    pub name: Option<String>,
    /// Only doctors who consult in this ISO 639-1 language, such as `de`.
    pub language: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A verified doctor as patients see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryEntry {
    pub doctor_id: Uuid,
    pub display_name: Option<String>,
    pub specialty: String,
    pub languages: Vec<String>,
    pub biography: Option<String>,
    /// IANA time zone the doctor works in.
    pub time_zone: String,
    /// First bookable slot within the booking horizon; absent when there is none.
    #[schema(value_type = Option<Object>)]
    pub next_available_slot: Option<Slot>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryPage {
    pub doctors: Vec<DirectoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/doctors",
    tag = "doctors",
    params(DirectoryParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Verified doctors, oldest verification first", body = DirectoryPage),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn directory(
    _auth: Authenticated,
    state: web::Data<SharedState>,
    index: web::Data<BlindIndex>,
    params: web::Query<DirectoryParams>,
) -> Result<HttpResponse, ApiError> {
    let filter = DirectoryFilter::parse(&params, &index)?;
    let key = filter.page_key();
    let now = state.clock.now();
    let cache = &state.directory_cache;
    if let Some(body) = cache.get(&key, now) {
        return Ok(json_body(body));
    }
    // Read before the queries, so that a change committed meanwhile makes the page stale.
    let generation = cache.generation();
    let page = load_directory_page(&state, filter, now).await?;
    let body = Bytes::from(serde_json::to_vec(&page).map_err(ApiError::internal)?);
    if let Some(generation) = generation {
        cache.put(
            key,
            generation,
            now,
            page.valid_until(&state.booking_policy, now),
            body.clone(),
        );
    }
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

impl DirectoryPage {
    /// Returns the last instant at which every listed next slot can still be booked.
    /// When no doctor on the page has one, it returns `now` plus the cache's maximum age.
    fn valid_until(&self, policy: &BookingPolicy, now: DateTime<Utc>) -> DateTime<Utc> {
        self.doctors
            .iter()
            .filter_map(|doctor| doctor.next_available_slot.as_ref())
            .map(|slot| slot.start - policy.minimum_notice())
            .min()
            .unwrap_or(now + directory_cache::MAX_AGE)
    }
}

/// Queries one directory page with each doctor's next free slot at `now`.
async fn load_directory_page(
    state: &AppState,
    filter: DirectoryFilter,
    now: DateTime<Utc>,
) -> Result<DirectoryPage, ApiError> {
    let mut conditions = vec!["status = 'verified'".to_owned()];
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(specialty) = filter.specialty {
        values.push(Box::new(specialty.as_str().to_owned()));
        conditions.push(format!("specialty = ${}", values.len()));
    }
    if let Some(language) = filter.language {
        values.push(Box::new(vec![language.as_str().to_owned()]));
        conditions.push(format!("languages @> ${}", values.len()));
    }
    if !filter.name_tokens.is_empty() {
        values.push(Box::new(filter.name_tokens));
        conditions.push(format!("name_tokens @> ${}", values.len()));
    }
    if let Some((verified_at, doctor_id)) = filter.after {
        values.push(Box::new(verified_at));
        values.push(Box::new(doctor_id));
        conditions.push(format!(
            "(verified_at, doctor_id) > (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(Box::new(filter.limit + 1));
    let query = format!(
        "SELECT {DIRECTORY_COLUMNS} FROM doctor_profiles WHERE {} ORDER BY verified_at, doctor_id LIMIT ${}",
        conditions.join(" AND "),
        values.len()
    );
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let parameters: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    // Each combination of filters is one statement, prepared once per connection.
    let statement = client
        .prepare_cached(&query)
        .await
        .map_err(ApiError::internal)?;
    let rows = client
        .query(&statement, &parameters)
        .await
        .map_err(ApiError::internal)?;

    let has_more = rows.len() as i64 > filter.limit;
    let page: Vec<DirectoryRow> = rows
        .iter()
        .take(filter.limit as usize)
        .map(DirectoryRow::from_row)
        .collect();
    let policy = &state.booking_policy;
    let horizon_end = now + policy.horizon();
    let cached: Vec<Arc<CachedDoctor>> = page
        .iter()
        .map(|doctor| state.doctor_cache.get(doctor.doctor_id, &doctor.schedule))
        .collect::<Result<_, _>>()?;
    // A doctor whose kept next slot may still hold needs only the bookings before it.
    let ids: Vec<Uuid> = page.iter().map(|doctor| doctor.doctor_id).collect();
    let until: Vec<DateTime<Utc>> = cached
        .iter()
        .map(|entry| {
            entry
                .booked_needed_until(now, policy)
                .unwrap_or(horizon_end)
        })
        .collect();
    let booked = booked_ranges_until(&client, &ids, &until, now).await?;
    let mut next_slots = Vec::with_capacity(page.len());
    let mut again = Vec::new();
    for (index, entry) in cached.iter().enumerate() {
        let doctor_booked = booked.get(&ids[index]).map_or(&[][..], Vec::as_slice);
        match entry.next_available_slot(doctor_booked, until[index], now, policy)? {
            NextSlotLookup::Found(slot) => next_slots.push(slot),
            NextSlotLookup::NeedsWholeHorizon => {
                next_slots.push(None);
                again.push(index);
            }
        }
    }
    if !again.is_empty() {
        let again_ids: Vec<Uuid> = again.iter().map(|index| ids[*index]).collect();
        let booked = booked_ranges(&client, &again_ids, now, horizon_end).await?;
        for index in again {
            let doctor_booked = booked.get(&ids[index]).map_or(&[][..], Vec::as_slice);
            let lookup =
                cached[index].next_available_slot(doctor_booked, horizon_end, now, policy)?;
            let NextSlotLookup::Found(slot) = lookup else {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "next free slot of doctor {} undecided with bookings up to the horizon",
                    ids[index]
                )));
            };
            next_slots[index] = slot;
        }
    }
    // Opening a sealed value may load a data key through the same pool. Holding this
    // connection meanwhile would let a burst of concurrent pages take every connection
    // and then wait for one forever.
    drop(client);
    let mut doctors = Vec::new();
    let mut last = None;
    for (doctor, next) in page.iter().zip(next_slots) {
        last = doctor.verified_at.map(|at| (at, doctor.doctor_id));
        doctors.push(DirectoryEntry {
            doctor_id: doctor.doctor_id,
            display_name: doctor.display_name(&state.keys).await?,
            specialty: doctor.specialty.clone(),
            languages: doctor.languages.clone(),
            biography: doctor.biography(&state.keys).await?,
            time_zone: doctor.schedule.time_zone.clone(),
            next_available_slot: next,
        });
    }
    let next_cursor = match (has_more, last) {
        (true, Some((at, id))) => Some(cursor::encode(at, id)),
        _ => None,
    };
    Ok(DirectoryPage {
        doctors,
        next_cursor,
    })
}

struct DirectoryFilter {
    specialty: Option<Specialty>,
    language: Option<Language>,
    name_tokens: Vec<String>,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
}

impl DirectoryFilter {
    fn page_key(&self) -> PageKey {
        PageKey {
            specialty: self
                .specialty
                .as_ref()
                .map(|specialty| specialty.as_str().to_owned()),
            language: self
                .language
                .as_ref()
                .map(|language| language.as_str().to_owned()),
            name_tokens: self.name_tokens.clone(),
            limit: self.limit,
            after: self.after,
        }
    }

    fn parse(params: &DirectoryParams, index: &BlindIndex) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let specialty = params
            .specialty
            .as_deref()
            .and_then(|raw| keep(&mut errors, Specialty::parse("specialty", raw)));
        let language = params
            .language
            .as_deref()
            .and_then(|raw| keep(&mut errors, Language::parse("language", raw)));
        let name_tokens = match params.name.as_deref() {
            None => Vec::new(),
            Some(raw) if raw.trim().is_empty() || raw.chars().count() > 100 => {
                errors.push(FieldError::new("name", "must be 1 to 100 characters"));
                Vec::new()
            }
            Some(raw) => index.name_tokens(raw),
        };
        let limit = match params.limit.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => {
                let parsed = raw
                    .parse::<i64>()
                    .ok()
                    .filter(|value| (1..=MAX_PAGE_SIZE).contains(value));
                let detail = format!(
                    "'{}' is not an integer from 1 to {MAX_PAGE_SIZE}",
                    truncate(raw, 40)
                );
                keep(
                    &mut errors,
                    parsed.ok_or_else(|| FieldError::new("limit", detail)),
                )
                .unwrap_or(DEFAULT_PAGE_SIZE)
            }
        };
        let after = params.cursor.as_deref().and_then(|raw| {
            let detail = format!("'{}' is not a cursor from this API", truncate(raw, 40));
            keep(
                &mut errors,
                cursor::decode(raw).ok_or_else(|| FieldError::new("cursor", detail)),
            )
        });
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(Self {
            specialty,
            language,
            name_tokens,
            limit,
            after,
        })
    }
}

/// Returns the value, or records the error and returns `None`.
fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SlotParams {
    /// Start of the range, RFC 3339 (for example `2026-12-07T00:00:00Z`).
    #[param(value_type = String, format = DateTime)]
    pub from: Option<String>,
    /// End of the range (exclusive), at most the booking horizon after `from`.
    #[param(value_type = String, format = DateTime)]
    pub to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/doctors/{doctor_id}/slots",
    tag = "doctors",
    params(("doctor_id" = Uuid, Path, description = "A verified doctor"), SlotParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Bookable 30-minute slots in UTC, with the doctor's time zone", body = Object),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No verified doctor with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "from or to is missing or invalid, or the range exceeds the horizon", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn slots(
    _auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    params: web::Query<SlotParams>,
) -> Result<HttpResponse, ApiError> {
    let doctor_id = Uuid::parse_str(&path).map_err(|_| {
        FieldError::new(
            "doctor_id",
            format!("'{}' is not a valid UUID", truncate(&path, 40)),
        )
    })?;
    let mut errors = Vec::new();
    let mut instant = |field: &str, raw: &Option<String>| match raw.as_deref() {
        None => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(raw) => match DateTime::parse_from_rfc3339(raw) {
            Ok(value) => Some(value.with_timezone(&Utc)),
            Err(_) => {
                errors.push(FieldError::new(
                    field,
                    format!("'{}' is not an RFC 3339 date-time", truncate(raw, 40)),
                ));
                None
            }
        },
    };
    let from = instant("from", &params.from);
    let to = instant("to", &params.to);
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::Validation(errors));
    };

    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM doctor_profiles WHERE doctor_id = $1 AND status = 'verified'"
        ))
        .await
        .map_err(ApiError::internal)?;
    let row = client
        .query_opt(&statement, &[&doctor_id])
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no verified doctor {doctor_id}")))?;
    let columns = ScheduleColumns::from_row(&row, 0);
    let booked = if to > from {
        booked_ranges(&client, &[doctor_id], from, to)
            .await?
            .remove(&doctor_id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let list: SlotList = state
        .doctor_cache
        .get(doctor_id, &columns)?
        .schedule
        .list_slots(from, to, &booked, state.clock.now(), &state.booking_policy)
        .map_err(|error| ApiError::Validation(vec![error]))?;
    Ok(HttpResponse::Ok().json(list))
}

/// The doctor's own profile, with everything the doctor entered and its review state.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnProfile {
    pub doctor_id: Uuid,
    /// `draft`, `submitted`, `verified`, `rejected` or `suspended`.
    pub status: String,
    pub display_name: Option<String>,
    pub specialty: String,
    pub license_number: Option<String>,
    pub issuing_authority: String,
    pub biography: Option<String>,
    pub time_zone: String,
    pub languages: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<LicenseDocument>,
    /// Reason of the last rejection or suspension while it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub weekly_availability: Vec<RawWindow>,
    pub time_off: Vec<TimeOffEntry>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl OwnProfile {
    pub async fn build(
        doctor: &DoctorRow,
        keys: &medflow_infra::crypto::keys::KeyRing,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            doctor_id: doctor.doctor_id,
            status: doctor.status.clone(),
            display_name: doctor.display_name(keys).await?,
            specialty: doctor.specialty.clone(),
            license_number: doctor.license_number(keys).await?,
            issuing_authority: doctor.issuing_authority.clone(),
            biography: doctor.biography(keys).await?,
            time_zone: doctor.time_zone.clone(),
            languages: doctor.languages.clone(),
            documents: doctor.documents.clone(),
            decision_reason: doctor.decision_reason(keys).await?,
            weekly_availability: doctor.weekly_windows(),
            time_off: doctor.time_off().to_vec(),
            submitted_at: doctor.submitted_at,
            verified_at: doctor.verified_at,
            updated_at: doctor.updated_at,
        })
    }
}

#[utoipa::path(
    get,
    path = "/doctors/me/profile",
    tag = "doctors",
    params(WaitParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The calling doctor's profile", body = OwnProfile),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile saved yet, or not projected yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach wait_for_sequence in time", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn own_profile(
    auth: Authenticated,
    state: web::Data<SharedState>,
    wait: web::Query<WaitParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Doctor])?;
    let doctor_id = auth.session.account_id;
    if let Some((sequence, timeout)) = wait.parse(state.max_wait_ms)? {
        wait_for(
            &state.pool,
            PROJECTION,
            AGGREGATE_TYPE,
            &doctor_id.to_string(),
            sequence,
            timeout,
        )
        .await?;
    }
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            &format!("SELECT {DOCTOR_COLUMNS} FROM doctor_profiles WHERE doctor_id = $1"),
            &[&doctor_id.0],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::NotFound(
                "no doctor profile yet; save it with PUT /doctors/me/profile".to_owned(),
            )
        })?;
    // Released before opening sealed values, which may need a connection of the pool.
    drop(client);
    let doctor = DoctorRow::from_row(&row)?;
    Ok(HttpResponse::Ok().json(OwnProfile::build(&doctor, &state.keys).await?))
}
