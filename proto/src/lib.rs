//! The gRPC contract (`exp025.proto`), compiled, and the vocabulary every
//! crate shares with it.

#![warn(missing_docs)]

pub mod client; // reaching a coordinator: URL, bearer token, TLS
pub mod config; // the notebook's default configuration and its validation
pub mod metrics; // every reported metric: names, splits, direction
pub mod names; // init scheme names as sweep files and tables write them

/// Generated messages and services of package `exp025.v1`.
#[allow(missing_docs, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("exp025.v1");
}

/// The encoded descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/exp025_descriptor.bin"));

/// Bumped on every incompatible change to the contract; the coordinator
/// refuses workers that announce another.
pub const PROTOCOL_VERSION: u32 = 1;
