//! Generated gRPC types for palisade (`palisade.v1`): the public `Control`
//! service and the witness-to-witness `RaftPeer` and `WitnessPeer`
//! services. The `.proto` files live in `proto/palisade/v1/` at the
//! workspace root.

#![allow(clippy::all, missing_docs)]
// The generated docs are the .proto comments, written for protobuf readers:
// TOML section names and placeholders are not rustdoc links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

/// `palisade.v1`: messages and services.
pub mod v1 {
    tonic::include_proto!("palisade.v1");
}
