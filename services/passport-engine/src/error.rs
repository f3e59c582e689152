//! The Passport Engine's one API error type, mapped to gRPC statuses. Database and unexpected
//! errors are logged with an id and become an opaque INTERNAL.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer (the Document Signer, the PKD) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> Self {
        EngineError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<marty_events::EventError> for EngineError {
    fn from(e: marty_events::EventError) -> Self {
        EngineError::Internal(anyhow::Error::new(e).context("writing the event"))
    }
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Status {
        match e {
            EngineError::InvalidArgument(m) => Status::invalid_argument(m),
            EngineError::NotFound(m) => Status::not_found(m),
            EngineError::AlreadyExists(m) => Status::already_exists(m),
            EngineError::FailedPrecondition(m) => Status::failed_precondition(m),
            EngineError::Unavailable(m) => Status::unavailable(m),
            EngineError::Internal(e) => marty_runtime::internal_status(crate::SERVICE, &e),
        }
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(anyhow::anyhow!("{e}"))
}

/// A peer's failure: unreachable stays UNAVAILABLE, a refusal keeps its message.
pub(crate) fn peer(service: &str, s: tonic::Status) -> EngineError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            EngineError::Unavailable(format!("the {service} cannot be reached: {}", s.message()))
        }
        tonic::Code::InvalidArgument => EngineError::InvalidArgument(s.message().to_owned()),
        tonic::Code::FailedPrecondition => {
            EngineError::FailedPrecondition(format!("the {service}: {}", s.message()))
        }
        _ => EngineError::Internal(anyhow::anyhow!(
            "the {service} answered {:?}: {}",
            s.code(),
            s.message()
        )),
    }
}
