//! A user's in-app notifications: the list (`GET /notifications`) and a live stream
//! of new ones as Server-Sent Events (`GET /notifications/stream`). Notifications carry
//! ids, times and the kind of change, never names or clinical content.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::StreamExt;
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::sessions::SessionStore;
use medflow_infra::web::access;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::notifications::Announcement;
use crate::query_params::{optional_instant, page_size};
use crate::state::SharedState;

const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 200;
/// Interval of comment lines that keep idle streams open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const COLUMNS: &str = "notification_id, kind, appointment_id, payload, created_at, read_at";

/// One notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub notification_id: Uuid,
    /// `appointment_booked`, `appointment_rescheduled`, `appointment_cancelled` or
    /// `appointment_reminder`.
    pub kind: String,
    pub appointment_id: Option<Uuid>,
    /// Times of the appointment (`start`, `end`, `doctor_time_zone`), and for reminders
    /// `minutes_before`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl NotificationView {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            notification_id: row.get(0),
            kind: row.get(1),
            appointment_id: row.get(2),
            payload: row.get(3),
            created_at: row.get(4),
            read_at: row.get(5),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only unread notifications (`true` or `false`, default `false`).
    #[param(value_type = Option<bool>)]
    pub unread: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Only notifications created before this RFC 3339 time; pass the last
    /// `created_at` of a page to get the next one.
    #[param(value_type = Option<String>, format = DateTime)]
    pub before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    /// Unread notifications in total.
    pub unread: i64,
}

#[utoipa::path(
    get,
    path = "/notifications",
    tag = "notifications",
    params(ListParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's notifications, newest first", body = NotificationPage),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let unread_only = match params.unread.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(raw) => {
            errors.push(FieldError::new(
                "unread",
                format!("'{}' is not true or false", truncate(raw, 40)),
            ));
            false
        }
    };
    let limit = page_size(
        &mut errors,
        params.limit.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    );
    let before = optional_instant(&mut errors, "before", params.before.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let recipient = auth.session.account_id.0;
    note_recipient(&auth);
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM notifications
                 WHERE recipient_id = $1 AND ($2 = false OR read_at IS NULL)
                   AND ($3::timestamptz IS NULL OR created_at < $3)
                 ORDER BY created_at DESC, notification_id LIMIT $4"
            ),
            &[&recipient, &unread_only, &before, &limit],
        )
        .await
        .map_err(ApiError::internal)?;
    let unread: i64 = client
        .query_one(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND read_at IS NULL",
            &[&recipient],
        )
        .await
        .map_err(ApiError::internal)?
        .get(0);
    Ok(HttpResponse::Ok().json(NotificationPage {
        notifications: rows.iter().map(NotificationView::from_row).collect(),
        unread,
    }))
}

#[utoipa::path(
    get,
    path = "/notifications/stream",
    tag = "notifications",
    security(("session" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one `notification` event per new notification of the caller, with the notification as JSON data; a `resync` event when the stream fell behind and the client should list its notifications again"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stream(
    auth: Authenticated,
    state: web::Data<SharedState>,
    sessions: web::Data<SessionStore>,
) -> HttpResponse {
    let recipient = auth.session.account_id.0;
    note_recipient(&auth);
    let session_id = auth.session.session_id;
    let pool = state.pool.clone();

    let announcements = BroadcastStream::new(state.notifications.subscribe());
    let keep_alive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(KEEP_ALIVE))
        .map(|_| Frame::KeepAlive);
    let events = announcements.map(|received| match received {
        Ok(announcement) => Frame::Announcement(announcement),
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(_)) => Frame::Resync,
    });

    // Before each frame it would send, the stream checks that its session is still live,
    // so a logout, a suspension or the idle timeout ends it within one keep-alive
    // interval and before any further notification. The stream does not count as use of
    // the session.
    let frames = futures::stream::select(events, keep_alive)
        .filter(move |frame| futures::future::ready(frame.concerns(recipient)))
        .then(move |frame| {
            let sessions = sessions.clone();
            async move {
                match sessions.is_live(session_id).await {
                    Ok(true) => Some(frame),
                    Ok(false) => {
                        tracing::info!(%session_id, "notification stream closed: its session ended");
                        None
                    }
                    Err(error) => {
                        tracing::warn!(%session_id, error = %error, "checking a stream's session failed; closing the stream");
                        None
                    }
                }
            }
        })
        .take_while(|frame| futures::future::ready(frame.is_some()))
        .filter_map(move |frame| {
            let pool = pool.clone();
            async move { render(frame?, &pool).await }
        });

    tracing::info!(account_id = %recipient, "notification stream opened");
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(frames.map(Ok::<_, actix_web::Error>))
}

enum Frame {
    Announcement(Announcement),
    Resync,
    KeepAlive,
}

impl Frame {
    /// Returns whether the frame belongs on `recipient`'s stream, which excludes
    /// announcements for other users.
    fn concerns(&self, recipient: Uuid) -> bool {
        match self {
            Frame::Announcement(announcement) => announcement.recipient == recipient,
            Frame::Resync | Frame::KeepAlive => true,
        }
    }
}

/// Renders one frame of the caller's stream.
async fn render(frame: Frame, pool: &Pool) -> Option<web::Bytes> {
    match frame {
        Frame::KeepAlive => Some(web::Bytes::from_static(b": keep-alive\n\n")),
        Frame::Resync => Some(web::Bytes::from_static(b"event: resync\ndata: {}\n\n")),
        Frame::Announcement(announcement) => match load(pool, announcement.notification_id).await {
            Ok(Some(view)) => {
                let data = serde_json::to_string(&view).ok()?;
                Some(web::Bytes::from(format!(
                    "id: {}\nevent: notification\ndata: {data}\n\n",
                    view.notification_id
                )))
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(
                    notification_id = %announcement.notification_id,
                    error = %format!("{error:#}"),
                    "loading a notification for a stream failed; asking the client to resync"
                );
                Some(web::Bytes::from_static(b"event: resync\ndata: {}\n\n"))
            }
        },
    }
}

async fn load(pool: &Pool, notification_id: Uuid) -> anyhow::Result<Option<NotificationView>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM notifications WHERE notification_id = $1"),
            &[&notification_id],
        )
        .await?;
    Ok(row.as_ref().map(NotificationView::from_row))
}

/// Notifications are about the recipient's appointments: a patient's are patient data.
fn note_recipient(auth: &Authenticated) {
    access::target("notifications", auth.session.account_id);
    if auth.session.role == Role::Patient {
        access::patient(auth.session.account_id.0);
    }
}
