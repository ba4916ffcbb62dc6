//! Compiles every `.proto` under the workspace's `proto/` folder with a vendored `protoc`, so a fresh
//! machine needs nothing installed, and writes the file descriptor set that server reflection serves.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto_root = proto_root.canonicalize()?;
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root.join("settle"), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `prost::Name` on every message: events carry objects as `google.protobuf.Any`.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("settle_descriptor.bin"))
        // Malformed requests are INVALID_ARGUMENT, not INTERNAL (see `codec.rs`).
        .codec_path("crate::codec::SettleCodec")
        // Deterministic encoding of `metadata` maps: idempotency fingerprints hash encoded requests.
        .btree_map(".")
        // One generated file declaring the whole `settle::<context>::v1` module tree.
        .include_file("settle.rs")
        .compile_with_config(config, &files, &[proto_root])?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
