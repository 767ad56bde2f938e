//! Compiles `proto/**/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates prost messages and tonic clients and servers from the result.

use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "motcua/events/v1/events.proto",
    "motcua/intake/v1/intake.proto",
    "motcua/reports/v1/reports.proto",
    "motcua/reports/v1/deadlines.proto",
    "motcua/intake/v1/log.proto",
    "motcua/intake/v1/dossiers.proto",
    "motcua/admin/v1/parked.proto",
    "motcua/reports/v1/rebuild.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(FILES, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC server reflection, so generic clients need no .proto files.
    fs::write(out.join("motcua_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
