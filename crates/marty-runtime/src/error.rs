//! The error every service's API returns: what went wrong, in words a caller can act on,
//! mapped to one gRPC status. Database and unexpected errors become `Internal`, which is
//! logged once with its causes and an id and reaches the caller as an opaque INTERNAL with
//! that id: SQL, paths and key material never leave the process.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer (another service) cannot be reached, or the service is shutting down.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// An unexpected failure, from anything that displays.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(anyhow::anyhow!("{e}"))
    }

    /// The same error again, for each caller of work that failed as a whole.
    pub fn duplicate(&self) -> ApiError {
        match self {
            ApiError::InvalidArgument(m) => ApiError::InvalidArgument(m.clone()),
            ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
            ApiError::AlreadyExists(m) => ApiError::AlreadyExists(m.clone()),
            ApiError::FailedPrecondition(m) => ApiError::FailedPrecondition(m.clone()),
            ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
            ApiError::Internal(e) => ApiError::Internal(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // The database is away (its readiness probe says so too): the caller may retry.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %e, "the service's database is unreachable");
                ApiError::Unavailable("the service's database is unreachable; try again".into())
            }
            e => ApiError::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

impl From<marty_events::EventError> for ApiError {
    fn from(e: marty_events::EventError) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("writing the event"))
    }
}

impl From<marty_keys::KeyError> for ApiError {
    fn from(e: marty_keys::KeyError) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("private key"))
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            // The RPC's span (opened by the metrics layer) names the service and method.
            ApiError::Internal(e) => crate::internal_status(&e),
        }
    }
}
