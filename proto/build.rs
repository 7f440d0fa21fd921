//! Compiles `tollgate/v1/*.proto` with the vendored `protoc`, so a fresh machine needs no
//! system protobuf package, and writes the descriptor set served by gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc);
    let protos = [
        "tollgate/v1/config.proto",
        "tollgate/v1/admin.proto",
        "tollgate/v1/usage.proto",
        "tollgate/v1/limits.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        // Junk from a peer is INVALID_ARGUMENT, not INTERNAL: see src/codec.rs.
        .codec_path("crate::codec::ProstCodec")
        // Admin clients print responses as JSON; the derive keeps that output in step with the
        // contract instead of hand-copied structs.
        .type_attribute(".tollgate.v1", "#[derive(serde::Serialize)]")
        .file_descriptor_set_path(out_dir.join("tollgate_descriptor.bin"))
        .compile_with_config(prost_config, &protos, &["."])?;
    Ok(())
}
