//! Marty's gRPC API contracts, generated from `proto/marty/<service>/v1/*.proto`.
//!
//! These messages are contracts between processes, never database rows: each service's store
//! maps them to its own types, so a schema can change without changing an API and the reverse.

#![allow(missing_debug_implementations, clippy::all)]

pub mod csca {
    pub mod v1 {
        tonic::include_proto!("marty.csca.v1");
    }
}

pub mod signer {
    pub mod v1 {
        tonic::include_proto!("marty.signer.v1");
    }
}

pub mod pkd {
    pub mod v1 {
        tonic::include_proto!("marty.pkd.v1");
    }
}

pub mod passport {
    pub mod v1 {
        tonic::include_proto!("marty.passport.v1");
    }
}

/// A point in time as a protobuf `Timestamp`.
pub fn timestamp(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Always 0..=999_999_999, which fits.
        nanos: t.nanosecond() as i32,
    }
}

/// A protobuf `Timestamp` as a point in time; `None` when it lies outside what `time`
/// represents (years −9999 to 9999) or its nanoseconds are out of range.
pub fn offset_date_time(t: &prost_types::Timestamp) -> Option<time::OffsetDateTime> {
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    time::OffsetDateTime::from_unix_timestamp(t.seconds)
        .ok()?
        .replace_nanosecond(nanos)
        .ok()
}

/// The encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("marty_descriptor");
