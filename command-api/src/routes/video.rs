//! Video consultations: LiveKit access tokens for an appointment's room
//! (`POST /appointments/{appointment_id}/video-token`) and the signed webhooks in which
//! LiveKit reports what happened in the room (`POST /webhooks/livekit`).

use std::time::Duration;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use futures::StreamExt;
use medflow_domain::appointment::{AppointmentCommand, AppointmentError, Party, VideoActivity};
use medflow_domain::values::Role;
use medflow_infra::audit::{AuditEntry, Outcome};
use medflow_infra::event_store::{EventMetadata, TransactionalError};
use medflow_infra::video::{Participant, VideoToken, WebhookKind, WebhookNotice, WebhookRejection};
use medflow_infra::web::access;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::{request_id, ApiError};
use serde::Serialize;
use utoipa::ToSchema;

use super::appointments::{load_for_party, parse_appointment_id, AppointmentSource};
use super::record_aggregate;
use crate::error::from_appointment_error;
use crate::reservations::ReservationEffects;
use crate::state::SharedState;

/// Largest webhook body accepted. LiveKit's webhook events are a few kilobytes.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// Attempts at recording one webhook when concurrent deliveries race on the appointment.
const WEBHOOK_ATTEMPTS: usize = 3;

/// A video token with the join window it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoAccess {
    #[serde(flatten)]
    pub token: VideoToken,
    /// When joining became possible: a fixed time before the slot start.
    pub window_opens_at: DateTime<Utc>,
    /// When the window closes; the token expires then too.
    pub window_closes_at: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/video-token",
    tag = "video",
    params(("appointment_id" = Uuid, Path, description = "An appointment of the caller")),
    security(("session" = [])),
    responses(
        (status = 201, description = "A LiveKit token for this appointment's room only, valid until the window closes", body = VideoAccess),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is neither a patient nor a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`too-early`: the window has not opened; `too-late`: it has closed; `invalid-transition`: the appointment is cancelled or finished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn video_token(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Patient, Role::Doctor])?;
    let appointment_id = parse_appointment_id(&path)?;
    record_aggregate(&request, &appointment_id.to_string());
    // A refused request is recorded by the access log; an issued token here, since
    // the command leaves no event.
    let access = issue(&state, &auth, appointment_id).await?;
    let audit = AuditEntry {
        actor_id: Some(auth.session.account_id),
        actor_role: Some(auth.session.role),
        action: "appointment.video_token".into(),
        target_type: Some("appointment".into()),
        target_id: Some(appointment_id.to_string()),
        outcome: Outcome::Success,
        request_id: request_id::current(),
        client_address_index: None,
        patient_id: access::noted_patient(),
        client_address: None,
    };
    if let Err(error) = state.audit.record(&audit).await {
        tracing::error!(%appointment_id, error = %error, "recording the video token audit entry failed");
    }
    tracing::info!(%appointment_id, identity = %access.token.identity, "video token issued");
    Ok(HttpResponse::Created().json(access))
}

async fn issue(
    state: &SharedState,
    auth: &Authenticated,
    appointment_id: uuid::Uuid,
) -> Result<VideoAccess, ApiError> {
    let appointment = load_for_party(
        state,
        appointment_id,
        &auth.session,
        &[Party::Patient, Party::Doctor],
        AppointmentSource::Stored,
    )
    .await?
    .appointment;
    let (Some(slot), Some(party)) = (
        appointment.slot,
        appointment.party_of(auth.session.account_id),
    ) else {
        return Err(super::appointments::not_found(appointment_id));
    };
    if !appointment.holds_slot() {
        return Err(ApiError::conflict(
            "invalid-transition",
            "Invalid state transition",
            format!(
                "cannot join the video room of an appointment that is {}",
                appointment.status
            ),
        ));
    }

    let now = state.clock.now();
    let opens = slot.start() - state.video_window.before_start;
    let closes = slot.end() + state.video_window.after_end;
    if now < opens {
        return Err(ApiError::conflict(
            "too-early",
            "Too early",
            format!(
                "the video room opens at {}; request a token then",
                opens.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    if now >= closes {
        return Err(ApiError::conflict(
            "too-late",
            "Too late",
            format!(
                "the video room closed at {}",
                closes.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    let participant = match party {
        Party::Patient => Participant::Patient,
        Party::Doctor => Participant::Doctor,
    };
    let token = state
        .video_tokens
        .issue(appointment_id, participant, now, closes)
        .map_err(ApiError::internal)?;
    Ok(VideoAccess {
        token,
        window_opens_at: opens,
        window_closes_at: closes,
    })
}

/// Outcome of a webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// `recorded`, `duplicate` (already recorded) or `ignored` (an event or room
    /// MedFlow does not track).
    pub outcome: &'static str,
}

#[utoipa::path(
    post,
    path = "/webhooks/livekit",
    tag = "video",
    request_body(content = String, description = "The LiveKit webhook event as JSON; its SHA-256 must match the token's sha256 claim", content_type = "application/webhook+json"),
    params(("Authorization" = String, Header, description = "JWT signed by the LiveKit server with the API secret")),
    responses(
        (status = 200, description = "Webhook verified and recorded, or verified and ignored", body = WebhookReceipt),
        (status = 400, description = "The body is not a LiveKit webhook event", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid signature, or a body that does not match it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn livekit_webhook(
    request: HttpRequest,
    state: web::Data<SharedState>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        if body.len() + chunk.len() > WEBHOOK_BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge {
                limit: WEBHOOK_BODY_LIMIT,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let notice = state
        .webhooks
        .verify(&body, authorization)
        .map_err(|rejection| {
            tracing::warn!(reason = %rejection, "LiveKit webhook rejected");
            match rejection {
                WebhookRejection::MalformedBody(_) => {
                    ApiError::MalformedBody(rejection.to_string())
                }
                _ => ApiError::Unauthorized("the webhook signature is missing or invalid"),
            }
        })?;
    let outcome = record_webhook(&state, &notice).await?;
    tracing::info!(
        webhook_id = %notice.event_id,
        appointment_id = ?notice.appointment_id,
        outcome,
        "LiveKit webhook handled"
    );
    Ok(HttpResponse::Ok().json(WebhookReceipt { outcome }))
}

async fn record_webhook(
    state: &SharedState,
    notice: &WebhookNotice,
) -> Result<&'static str, ApiError> {
    let activity = match (&notice.kind, notice.participant) {
        (WebhookKind::RoomStarted, _) => VideoActivity::RoomStarted,
        (WebhookKind::RoomFinished, _) => VideoActivity::RoomFinished,
        (WebhookKind::ParticipantJoined, Some(participant)) => VideoActivity::ParticipantJoined {
            participant: party_of(participant),
        },
        (WebhookKind::ParticipantLeft, Some(participant)) => VideoActivity::ParticipantLeft {
            participant: party_of(participant),
        },
        _ => return Ok("ignored"),
    };
    let Some(appointment_id) = notice.appointment_id else {
        return Ok("ignored");
    };
    let aggregate_id = appointment_id.to_string();
    let at = notice.created_at.unwrap_or_else(|| state.clock.now());
    let metadata = EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: request_id::current().unwrap_or_default(),
        session_id: None,
    };

    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let command = AppointmentCommand::RecordVideoActivity {
            webhook_id: notice.event_id.clone(),
            activity,
            at,
        };
        match state
            .appointments
            .execute_with(
                &aggregate_id,
                command,
                metadata.clone(),
                &ReservationEffects::default(),
            )
            .await
        {
            Ok(committed) if committed.appended == 0 => return Ok("duplicate"),
            Ok(_) => return Ok("recorded"),
            Err(TransactionalError::Aggregate(AggregateError::UserError(
                AppointmentError::NotFound,
            ))) => return Ok("ignored"),
            Err(TransactionalError::Aggregate(AggregateError::AggregateConflict))
                if attempt < WEBHOOK_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
            }
            Err(error) => return Err(from_appointment_error(error)),
        }
    }
    unreachable!("the last attempt returns")
}

fn party_of(participant: Participant) -> Party {
    match participant {
        Participant::Patient => Party::Patient,
        Participant::Doctor => Party::Doctor,
    }
}
