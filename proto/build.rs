//! Compiles the protos with protox (pure Rust), so building Spillway needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "externalscaler.proto",
        "prometheus/types.proto",
        "prometheus/remote.proto",
        "spillway/ingest.proto",
        "spillway/shard.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
