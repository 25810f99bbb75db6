//! Compiles `exp025.proto` with protox (a protobuf compiler in Rust, so no
//! `protoc` is needed) and writes the descriptor set for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=exp025.proto");
    let descriptors = protox::compile(["exp025.proto"], ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("exp025_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // A trial is large beside an epoch event.
        .boxed(".exp025.v1.WatchEvent.event.trial")
        .compile_fds(descriptors)?;
    Ok(())
}
