//! The session state machine: pure, no IO. Feed it what each side sends; it
//! returns [`Action`]s: bytes to forward (unchanged messages keep their raw
//! bytes), local answers, and audit [`Event`]s.
//!
//! ```text
//! Startup ─► EncryptionNegotiation ─► Startup (refused) | Encrypted (opaque)
//!    └─────► Authentication ─► Ready ⇄ SimpleQuery | ExtendedQuery | CopyIn | CopyOut | CopyBoth
//!                                     └─► Terminated
//! ```
//!
//! Statements in flight are kept in the order the client sent them; the
//! server answers in that order, so each response is matched to its request
//! even with pipelining. After an error in an extended-query batch the
//! server skips to Sync; the session does the same (skipped Executes finish
//! as [`Outcome::Skipped`]).

mod client;
mod events;
mod hooks;
mod server;
mod state;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

pub use events::{Event, Outcome, Protocol, StatementFinished, StatementStarted};
pub use hooks::{AuditOnly, Hooks, RowContext, Statement, Verdict};

use crate::error::ProtocolError;
use crate::frame::{BackendDecoder, FrontendDecoder, Limits, Message};
use crate::messages::TransactionStatus;
use state::{Pending, Portal, PreparedStatement, Registry};

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the server.
    ToServer(Bytes),
    /// Write these bytes to the client.
    ToClient(Bytes),
    /// Record this.
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the startup message (or an SSL/GSSENC/cancel request).
    Startup,
    /// An SSL or GSSENC request awaits the server's one-byte answer.
    EncryptionNegotiation,
    /// The server accepted TLS or GSSAPI encryption: the rest of the stream
    /// is opaque here and passed through unparsed.
    Encrypted,
    Authentication,
    /// Idle: nothing in flight.
    Ready,
    SimpleQuery,
    ExtendedQuery,
    CopyIn,
    CopyOut,
    CopyBoth,
    Terminated,
}

/// What a 'p' message from the client is, given the last authentication
/// request (the type byte is the same for all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    /// PasswordMessage (cleartext or md5).
    Password,
    SaslInitialResponse,
    SaslResponse,
    /// GSSAPI/SSPI data.
    GssResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Startup,
    EncryptionNegotiation,
    Encrypted,
    Authentication,
    Established,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copy {
    In,
    Out,
    Both,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SessionOptions {
    pub limits: Limits,
    /// Put parameter values in `StatementStarted` (off by default: values
    /// often hold personal data).
    pub record_parameters: bool,
}

pub struct Session<H: Hooks = AuditOnly> {
    hooks: H,
    options: SessionOptions,
    frontend: FrontendDecoder,
    backend: BackendDecoder,
    stage: Stage,
    password_kind: Option<PasswordKind>,
    status: TransactionStatus,
    copy: Option<Copy>,
    /// After a blocked extended-protocol statement: drop what the client
    /// sends until its Sync, as a server does after an error.
    discarding: bool,
    pending: VecDeque<Pending>,
    statements: Registry<PreparedStatement>,
    portals: Registry<Portal>,
    next_id: u64,
}

impl<H: Hooks> Session<H> {
    pub fn new(hooks: H, options: SessionOptions) -> Self {
        Self {
            hooks,
            options,
            frontend: FrontendDecoder::new(options.limits),
            backend: BackendDecoder::new(options.limits),
            stage: Stage::Startup,
            password_kind: None,
            status: TransactionStatus::Idle,
            copy: None,
            discarding: false,
            pending: VecDeque::new(),
            statements: Registry::default(),
            portals: Registry::default(),
            next_id: 0,
        }
    }

    /// For a relay that did the startup and login itself (the agent logs in
    /// to the database with its own credentials and answers the client's
    /// startup): the session starts idle, after the first ReadyForQuery.
    pub fn established(hooks: H, options: SessionOptions) -> Self {
        let mut session = Self::new(hooks, options);
        session.frontend.skip_startup();
        session.stage = Stage::Established;
        session
    }

    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    pub fn phase(&self) -> Phase {
        match self.stage {
            Stage::Startup => Phase::Startup,
            Stage::EncryptionNegotiation => Phase::EncryptionNegotiation,
            Stage::Encrypted => Phase::Encrypted,
            Stage::Authentication => Phase::Authentication,
            Stage::Terminated => Phase::Terminated,
            Stage::Established => match (self.copy, self.pending.front()) {
                (Some(Copy::In), _) => Phase::CopyIn,
                (Some(Copy::Out), _) => Phase::CopyOut,
                (Some(Copy::Both), _) => Phase::CopyBoth,
                (None, Some(Pending::Query(_))) => Phase::SimpleQuery,
                (None, Some(_)) => Phase::ExtendedQuery,
                (None, None) if self.discarding => Phase::ExtendedQuery,
                (None, None) => Phase::Ready,
            },
        }
    }

    /// The transaction status from the server's last ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.status
    }

    /// What the client's next 'p' message is, during authentication.
    pub fn password_kind(&self) -> Option<PasswordKind> {
        self.password_kind
    }

    /// Responses still due from the server (or local answers not yet given).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Named and unnamed prepared statements the session knows of.
    pub fn prepared_statements(&self) -> usize {
        self.statements.len()
    }

    /// Decodes and handles every whole message the client sent in `buf`,
    /// leaving a partial one there for the next call. Actions are appended
    /// to `out`; on an error, those already appended are still valid (send
    /// them, then `ErrorResponse::protocol_violation` to the client, and end
    /// the session).
    pub fn on_client_bytes(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        loop {
            if self.stage == Stage::Encrypted {
                if !buf.is_empty() {
                    out.push(Action::ToServer(buf.split().freeze()));
                }
                return Ok(());
            }
            match self.frontend.decode(buf)? {
                Some(message) => self.client_message(message, out)?,
                None => return Ok(()),
            }
        }
    }

    /// Decodes and handles every whole message the server sent in `buf`.
    pub fn on_server_bytes(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        loop {
            if self.stage == Stage::Encrypted {
                if !buf.is_empty() {
                    out.push(Action::ToClient(buf.split().freeze()));
                }
                return Ok(());
            }
            match self.backend.decode(buf)? {
                Some(message) => self.server_message(message, out)?,
                None => return Ok(()),
            }
        }
    }

    /// Handles one message from the client (decoded by the caller).
    pub fn client_message(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        self.client_message_into(message, out)
    }

    /// Handles one message from the server (decoded by the caller).
    pub fn server_message(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        self.server_message_into(message, out)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Default for Session<AuditOnly> {
    fn default() -> Self {
        Session::new(AuditOnly, SessionOptions::default())
    }
}

#[cfg(test)]
mod tests;
