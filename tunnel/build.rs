// Compiles the wire API with protox (pure Rust), so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["postern/v1/tunnel.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".postern.v1.Data.payload")
        // Small starting buffers for control streams (see src/codec.rs).
        .codec_path("crate::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
