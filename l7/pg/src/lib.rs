//! The Postgres wire protocol for Postern's agent, with no IO.
//!
//! - [`messages`]: one typed struct per wire message, `parse`/`encode`.
//! - [`frame`]: incremental decoders per direction that keep each message's
//!   raw bytes, with every length bounded before allocation.
//! - [`session`]: the session state machine: phases, statements in flight,
//!   audit events, guardrail and row-rewriting hooks.
//! - [`auth`]: login helpers (SCRAM-SHA-256, md5, cleartext) for the agent's
//!   own connection to the database.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod messages;
pub mod session;
mod typed;
mod wire;

pub use error::{ProtocolError, Tag};
pub use frame::{BackendDecoder, Direction, FrontendDecoder, Limits, Message};
pub use typed::{BackendMessage, FrontendMessage};
