//! settle's gRPC contracts, generated from `proto/settle/...` at build time.
//!
//! One module per protobuf package (`settle.invoices.v1` is [`settle::invoices::v1`]), each with its
//! messages and its `*_server` / `*_client` modules. [`FILE_DESCRIPTOR_SET`] feeds server reflection.

/// The encoded `FileDescriptorSet` of every settle package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/settle_descriptor.bin"));

pub mod codec;

#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/settle.rs"));
}

pub use generated::settle;
pub use generated::settle::{common, events};
