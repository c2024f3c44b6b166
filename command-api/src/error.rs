//! Maps write-side failures onto problem responses.

use cqrs_es::AggregateError;
use medflow_domain::account::AccountError;
use medflow_infra::web::ApiError;

pub fn from_account_error(error: AggregateError<AccountError>) -> ApiError {
    match error {
        AggregateError::UserError(AccountError::NotFound) => {
            ApiError::NotFound("account not found".to_owned())
        }
        AggregateError::UserError(AccountError::CannotSuspendSelf) => {
            ApiError::Forbidden(AccountError::CannotSuspendSelf.to_string())
        }
        AggregateError::UserError(other) => ApiError::Conflict(other.to_string()),
        AggregateError::AggregateConflict => ApiError::Conflict(
            "the account was changed by a concurrent request; reload it and retry".to_owned(),
        ),
        other => ApiError::internal(anyhow::anyhow!("account command failed: {other}")),
    }
}
