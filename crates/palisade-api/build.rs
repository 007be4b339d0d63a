//! Compiles `proto/palisade/v1/*.proto` with protox, a pure-Rust protobuf
//! compiler, so building palisade needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with `env!`: cargo reuses a compiled
    // build script for a copy of the tree at another path (a staged
    // checkout sharing the target directory), which then read the other
    // copy's protos.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let files = ["palisade/v1/control.proto", "palisade/v1/peer.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
