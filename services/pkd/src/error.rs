//! The service's API error: [`marty_runtime::ApiError`], one type for every service, mapped
//! to gRPC statuses there.

pub use marty_runtime::ApiError as PkdError;

pub type Result<T> = std::result::Result<T, PkdError>;

pub(crate) fn internal(e: impl std::fmt::Display) -> PkdError {
    PkdError::internal(e)
}
