//! The Document Signer's one API error type, mapped to gRPC statuses. Database and unexpected
//! errors are logged with an id and become an opaque INTERNAL.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer (the CSCA) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, SignerError>;

impl From<sqlx::Error> for SignerError {
    fn from(e: sqlx::Error) -> Self {
        SignerError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<marty_events::EventError> for SignerError {
    fn from(e: marty_events::EventError) -> Self {
        SignerError::Internal(anyhow::Error::new(e).context("writing the event"))
    }
}

impl From<marty_keys::KeyError> for SignerError {
    fn from(e: marty_keys::KeyError) -> Self {
        SignerError::Internal(anyhow::Error::new(e).context("signer key"))
    }
}

impl From<SignerError> for Status {
    fn from(e: SignerError) -> Status {
        match e {
            SignerError::InvalidArgument(m) => Status::invalid_argument(m),
            SignerError::NotFound(m) => Status::not_found(m),
            SignerError::AlreadyExists(m) => Status::already_exists(m),
            SignerError::FailedPrecondition(m) => Status::failed_precondition(m),
            SignerError::Unavailable(m) => Status::unavailable(m),
            SignerError::Internal(e) => marty_runtime::internal_status(crate::SERVICE, &e),
        }
    }
}
