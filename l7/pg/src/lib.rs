//! The Postgres wire protocol for Postern's agent, with no IO.
//!
//! - [`messages`]: one typed struct per wire message, `parse`/`encode`.
//! - [`frame`]: incremental decoders per direction that keep each message's
//!   raw bytes, with every length bounded before allocation.
//! - [`session`]: the session state machine: phases, statements in flight,
//!   audit events, guardrail and row-rewriting hooks.
//! - [`auth`]: login helpers (SCRAM-SHA-256, md5, cleartext) for the agent's
//!   own connection to the database.
//!
//! A relay runs one [`session::Session`] per connection and feeds it what each
//! side sends; it writes what the actions say, in order:
//!
//! ```
//! use bytes::BytesMut;
//! use postern_l7_pg::messages::{ErrorResponse, Query, StartupMessage, WireMessage};
//! use postern_l7_pg::session::{Action, AuditOnly, Session, SessionOptions};
//!
//! let mut session = Session::new(AuditOnly, SessionOptions::default());
//! let mut from_client = BytesMut::new();
//! from_client.extend_from_slice(&StartupMessage::new(vec![("user".into(), "alice".into())]).encode());
//! let mut actions = Vec::new();
//! match session.on_client_bytes(&mut from_client, &mut actions) {
//!     Ok(()) => {}
//!     // Write the actions already given, then this, and end the session.
//!     Err(error) => drop(ErrorResponse::protocol_violation(&error).encode()),
//! }
//! for action in actions {
//!     match action {
//!         Action::ToServer(bytes) => { /* write to the database */ }
//!         Action::ToClient(bytes) => { /* write to the client */ }
//!         Action::Event(event) => { /* audit, with a timestamp */ }
//!     }
//! }
//! ```
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
