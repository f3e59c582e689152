//! The service's API error: [`marty_runtime::ApiError`], one type for every service, mapped
//! to gRPC statuses there.

pub use marty_runtime::ApiError as EngineError;

pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::internal(e)
}

/// A peer's failure: unreachable stays UNAVAILABLE, a refusal keeps its message.
pub(crate) fn peer(service: &str, s: tonic::Status) -> EngineError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            EngineError::Unavailable(format!("the {service} cannot be reached: {}", s.message()))
        }
        tonic::Code::InvalidArgument => EngineError::InvalidArgument(s.message().to_owned()),
        // The peer's refusal is the caller's to act on ("no active signer: run `marty signer
        // activate`"), not an internal error.
        tonic::Code::FailedPrecondition | tonic::Code::NotFound => {
            EngineError::FailedPrecondition(format!("the {service}: {}", s.message()))
        }
        _ => EngineError::Internal(anyhow::anyhow!(
            "the {service} answered {:?}: {}",
            s.code(),
            s.message()
        )),
    }
}
