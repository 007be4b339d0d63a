//! Compiles `proto/palisade/v1/*.proto` with protox, a pure-Rust protobuf
//! compiler, so building palisade needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["palisade/v1/control.proto", "palisade/v1/peer.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
