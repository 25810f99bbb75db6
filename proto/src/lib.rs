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

/// The notebook's training settings, which a trial takes where its sweep
/// says nothing: PyTorch's default init for both networks, no glob ReLU,
/// Adam with lr 1e-4 and betas (0.9, 0.999), batch 4, 300 epochs, seed 0,
/// no dataset.
pub fn notebook_defaults() -> v1::TrialConfig {
    let default_init = names::parse_init_scheme("default").expect("a known name");
    v1::TrialConfig {
        gen_init: Some(default_init),
        disc_init: Some(default_init),
        glob_relu: false,
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        batch_size: 4,
        epochs: 300,
        seed: 0,
        dataset: None,
    }
}
