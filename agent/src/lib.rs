//! The Postern agent: runs inside the private network, dials OUT to gateways,
//! holds a control stream, and for each session request dials the target and
//! opens its own outbound data stream.
#![forbid(unsafe_code)]

pub mod allowlist;
pub mod backoff;
pub mod config;
mod control;
pub mod pg;
mod session;
mod tunnel;

pub use config::AgentConfig;
pub use tunnel::{AgentHandle, AgentStatus, spawn};
