//! The Postern wire API and the pieces of transport every program shares:
//! the generated gRPC types, a byte-stream adapter over a frame stream,
//! TLS set-up, HTTP/2 tuning, token handling and a masked secret type.
#![forbid(unsafe_code)]

pub mod auth;
pub mod codec;
pub mod env;
pub mod frame;
pub mod fuzzing;
pub mod http2;
pub mod open;
pub mod peer;
pub mod pinned;
pub mod relay;
pub mod signal;
pub mod stream;
pub mod tls;
pub mod wire;

/// Generated protobuf and gRPC types (`proto/postern/v1/tunnel.proto`).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("postern.v1");
}

pub use postern_secret::Secret;
pub use stream::FrameStream;
