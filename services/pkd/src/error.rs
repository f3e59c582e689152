//! The PKD's one API error type, mapped to gRPC statuses. Database and unexpected errors are
//! logged with an id and become an opaque INTERNAL.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum PkdError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, PkdError>;

impl From<sqlx::Error> for PkdError {
    fn from(e: sqlx::Error) -> Self {
        PkdError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<marty_events::EventError> for PkdError {
    fn from(e: marty_events::EventError) -> Self {
        PkdError::Internal(anyhow::Error::new(e).context("writing the event"))
    }
}

impl From<PkdError> for Status {
    fn from(e: PkdError) -> Status {
        match e {
            PkdError::InvalidArgument(m) => Status::invalid_argument(m),
            PkdError::NotFound(m) => Status::not_found(m),
            PkdError::FailedPrecondition(m) => Status::failed_precondition(m),
            PkdError::Internal(e) => marty_runtime::internal_status(crate::SERVICE, &e),
        }
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> PkdError {
    PkdError::Internal(anyhow::anyhow!("{e}"))
}
