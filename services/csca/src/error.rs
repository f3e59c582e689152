//! The CSCA's one API error type: what went wrong, in words a caller can act on, mapped to a
//! gRPC status. Database and unexpected errors are logged with an id and become an opaque
//! INTERNAL; SQL and internals never reach the caller.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum CscaError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, CscaError>;

impl From<sqlx::Error> for CscaError {
    fn from(e: sqlx::Error) -> Self {
        CscaError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<marty_events::EventError> for CscaError {
    fn from(e: marty_events::EventError) -> Self {
        CscaError::Internal(anyhow::Error::new(e).context("writing the event"))
    }
}

impl From<marty_keys::KeyError> for CscaError {
    fn from(e: marty_keys::KeyError) -> Self {
        CscaError::Internal(anyhow::Error::new(e).context("CSCA key"))
    }
}

impl From<CscaError> for Status {
    fn from(e: CscaError) -> Status {
        match e {
            CscaError::InvalidArgument(m) => Status::invalid_argument(m),
            CscaError::NotFound(m) => Status::not_found(m),
            CscaError::AlreadyExists(m) => Status::already_exists(m),
            CscaError::FailedPrecondition(m) => Status::failed_precondition(m),
            CscaError::Internal(e) => marty_runtime::internal_status(crate::SERVICE, &e),
        }
    }
}
