//! `GET /me` and the admin account list, both from the `accounts` projection.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use medflow_domain::values::{truncate, Role};
use medflow_domain::FieldError;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{AccountView, ACCOUNT_COLUMNS};
use crate::consistency::{wait_for, WaitParams};
use crate::cursor;
use crate::state::SharedState;

const PROJECTION: &str = "accounts";
const AGGREGATE_TYPE: &str = "account";
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

#[utoipa::path(
    get,
    path = "/me",
    tag = "accounts",
    params(WaitParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's account", body = AccountView),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the read model yet; retry with wait_for_sequence", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach wait_for_sequence in time", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(
    auth: Authenticated,
    state: web::Data<SharedState>,
    wait: web::Query<WaitParams>,
) -> Result<HttpResponse, ApiError> {
    let account_id = auth.session.account_id;
    if let Some((sequence, timeout)) = wait.parse(state.max_wait_ms)? {
        wait_for(
            &state.pool,
            PROJECTION,
            AGGREGATE_TYPE,
            &account_id.to_string(),
            sequence,
            timeout,
        )
        .await?;
    }
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM account_directory WHERE account_id = $1"),
            &[&account_id.0],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::NotFound(
                "the account is not in the read model yet; retry with wait_for_sequence".to_owned(),
            )
        })?;
    Ok(HttpResponse::Ok().json(AccountView::from_row(&row, &state.keys).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only accounts with this role: patient, doctor or admin.
    pub role: Option<String>,
    /// Only accounts with this status: active or suspended.
    pub status: Option<String>,
    /// Only the account with this e-mail address (matched by its keyed hash).
    pub email: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Account whose write to wait for, with `wait_for_sequence`.
    #[param(value_type = Option<uuid::Uuid>)]
    pub wait_for_account: Option<String>,
    /// Sequence of that account to wait for, from a command response.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub wait_for_sequence: Option<String>,
    /// Maximum wait in milliseconds (default 2000, capped by the server's maximum).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub wait_ms: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub accounts: Vec<AccountView>,
    /// Pass as `cursor` to fetch the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/accounts",
    tag = "admin",
    params(ListParams),
    security(("session" = [])),
    responses(
        (status = 200, description = "Accounts in registration order", body = AccountPage),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach wait_for_sequence in time", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_accounts(
    auth: Authenticated,
    state: web::Data<SharedState>,
    params: web::Query<ListParams>,
    index: web::Data<medflow_infra::crypto::index::BlindIndex>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let filter = Filter::parse(&params, &index)?;

    let wait = WaitParams {
        wait_for_sequence: params.wait_for_sequence.clone(),
        wait_ms: params.wait_ms.clone(),
    }
    .parse(state.max_wait_ms)?;
    match (&params.wait_for_account, wait) {
        (Some(raw), Some((sequence, timeout))) => {
            let account = Uuid::parse_str(raw).map_err(|_| {
                FieldError::new(
                    "wait_for_account",
                    format!("'{}' is not a valid UUID", truncate(raw, 40)),
                )
            })?;
            wait_for(
                &state.pool,
                PROJECTION,
                AGGREGATE_TYPE,
                &account.to_string(),
                sequence,
                timeout,
            )
            .await?;
        }
        (Some(_), None) => {
            return Err(
                FieldError::new("wait_for_sequence", "is required with wait_for_account").into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                FieldError::new("wait_for_account", "is required with wait_for_sequence").into(),
            );
        }
        (None, None) => {}
    }

    let mut conditions = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(role) = filter.role {
        values.push(Box::new(role.as_str().to_owned()));
        conditions.push(format!("role = ${}", values.len()));
    }
    if let Some(status) = filter.status {
        values.push(Box::new(status));
        conditions.push(format!("status = ${}", values.len()));
    }
    if let Some(email_index) = filter.email_index {
        values.push(Box::new(email_index));
        conditions.push(format!("email_index = ${}", values.len()));
    }
    if let Some((registered_at, account_id)) = filter.after {
        values.push(Box::new(registered_at));
        values.push(Box::new(account_id));
        conditions.push(format!(
            "(registered_at, account_id) > (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(Box::new(filter.limit + 1));
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let query = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM account_directory {where_clause}
         ORDER BY registered_at, account_id LIMIT ${}",
        values.len()
    );
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let parameters: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client
        .query(&query, &parameters)
        .await
        .map_err(ApiError::internal)?;

    let has_more = rows.len() as i64 > filter.limit;
    let mut accounts = Vec::with_capacity(rows.len());
    for row in rows.iter().take(filter.limit as usize) {
        accounts.push(AccountView::from_row(row, &state.keys).await?);
    }
    let next_cursor = match (has_more, accounts.last()) {
        (true, Some(last)) => Some(cursor::encode(last.registered_at, last.account_id)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(AccountPage {
        accounts,
        next_cursor,
    }))
}

struct Filter {
    role: Option<Role>,
    status: Option<String>,
    email_index: Option<String>,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
}

impl Filter {
    fn parse(
        params: &ListParams,
        index: &medflow_infra::crypto::index::BlindIndex,
    ) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let role = params
            .role
            .as_deref()
            .map(|raw| Role::parse("role", raw))
            .transpose()
            .unwrap_or_else(|error| {
                errors.push(error);
                None
            });
        let status = match params.status.as_deref() {
            None => None,
            Some(value @ ("active" | "suspended")) => Some(value.to_owned()),
            Some(other) => {
                errors.push(FieldError::new(
                    "status",
                    format!(
                        "'{}' is not a status; expected active or suspended",
                        truncate(other, 40)
                    ),
                ));
                None
            }
        };
        let email_index = match params.email.as_deref() {
            None => None,
            Some(raw) => match medflow_domain::values::EmailAddress::parse("email", raw) {
                Ok(email) => Some(index.email(&email).0),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        };
        let limit = match params.limit.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => match raw.parse::<i64>() {
                Ok(value) if (1..=MAX_PAGE_SIZE).contains(&value) => value,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!(
                            "'{}' is not an integer from 1 to {MAX_PAGE_SIZE}",
                            truncate(raw, 40)
                        ),
                    ));
                    DEFAULT_PAGE_SIZE
                }
            },
        };
        let after = match params.cursor.as_deref() {
            None => None,
            Some(raw) => match cursor::decode(raw) {
                Some(after) => Some(after),
                None => {
                    errors.push(FieldError::new(
                        "cursor",
                        format!("'{}' is not a cursor from this API", truncate(raw, 40)),
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Self {
                role,
                status,
                email_index,
                limit,
                after,
            })
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}
