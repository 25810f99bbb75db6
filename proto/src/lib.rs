//! The gRPC contract (`exp025.proto`), compiled, plus the protocol version
//! workers announce when they register.

#![allow(missing_debug_implementations)]

pub mod names;

/// Generated messages and services of package `exp025.v1`.
pub mod v1 {
    tonic::include_proto!("exp025.v1");
}

/// The encoded descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/exp025_descriptor.bin"));

/// Bumped on every incompatible change to the contract; the coordinator
/// refuses workers that announce another.
pub const PROTOCOL_VERSION: u32 = 1;
