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

/// The encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("marty_descriptor");
