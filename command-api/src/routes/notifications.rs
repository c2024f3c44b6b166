//! Marking in-app notifications read (`POST /notifications/{notification_id}/read`).
//! Notifications are not event-sourced: they are messages to one user, derived from
//! events, and reading them changes no clinical record.

use actix_web::{web, HttpResponse};
use medflow_domain::values::truncate;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use uuid::Uuid;

use crate::state::SharedState;

#[utoipa::path(
    post,
    path = "/notifications/{notification_id}/read",
    tag = "notifications",
    params(("notification_id" = Uuid, Path, description = "A notification of the caller")),
    security(("session" = [])),
    responses(
        (status = 204, description = "Marked read; marking it again changes nothing"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No notification with this id for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn mark_read(
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let notification_id = Uuid::parse_str(&path).map_err(|_| {
        ApiError::field(
            "notification_id",
            format!("'{}' is not a valid UUID", truncate(&path, 40)),
        )
    })?;
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let changed = client
        .execute(
            "UPDATE notifications SET read_at = COALESCE(read_at, $3)
             WHERE notification_id = $1 AND recipient_id = $2",
            &[
                &notification_id,
                &auth.session.account_id.0,
                &state.clock.now(),
            ],
        )
        .await
        .map_err(ApiError::internal)?;
    if changed == 0 {
        return Err(ApiError::NotFound(format!(
            "notification {notification_id} not found"
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}
