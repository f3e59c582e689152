//! Generates the gRPC code of every contract under `proto/` with the protoc that
//! `protoc-bin-vendored` ships (no system protoc), and the file descriptor set that server
//! reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let protos = [
        "marty/csca/v1/csca.proto",
        "marty/signer/v1/signer.proto",
        "marty/pkd/v1/pkd.proto",
        "marty/passport/v1/passport.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("marty_descriptor.bin");
    // google/protobuf/timestamp.proto ships with the vendored protoc.
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &protos.map(|p| root.join(p)), &[root, well_known])?;
    Ok(())
}
