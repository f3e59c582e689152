//! The service's API error: [`marty_runtime::ApiError`], one type for every service, mapped
//! to gRPC statuses there.

pub use marty_runtime::ApiError as CscaError;

pub type Result<T> = std::result::Result<T, CscaError>;
