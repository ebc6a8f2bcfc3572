//! What the session reports for audit. The machine has no clock: the caller
//! timestamps events as it receives them (a statement's duration is the time
//! between its `StatementStarted` and `StatementFinished`).

use std::sync::Arc;

use bytes::Bytes;

/// One thing the caller should know about; delivered in [`super::Action::Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client asked for TLS (`Ssl`) or GSSAPI encryption.
    EncryptionRequested {
        gss: bool,
    },
    /// The server's answer. Once accepted, the stream is opaque to the session.
    EncryptionAnswered {
        accepted: bool,
    },
    /// The startup message's parameters (`user`, `database`, …).
    Startup {
        parameters: Vec<(String, String)>,
    },
    /// This connection only cancels another session's query.
    CancelRequest {
        process_id: i32,
        secret_key: Bytes,
    },
    /// AuthenticationOk from the server.
    Authenticated,
    /// The key a CancelRequest for this session must quote.
    BackendKey {
        process_id: i32,
        secret_key: Bytes,
    },
    /// Startup is over: the first ReadyForQuery.
    Ready,
    StatementStarted(StatementStarted),
    StatementFinished(StatementFinished),
    /// The server sent an error outside any statement (failed login, FATAL
    /// shutdown, idle timeout).
    ServerError {
        code: String,
        message: String,
    },
    /// The client sent Terminate.
    Terminated,
}

/// How a statement reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A Query message (may hold several statements).
    Simple,
    /// Parse/Bind/Execute.
    Extended,
    /// A FunctionCall message (fast-path call by OID).
    FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementStarted {
    /// Unique within the session; `StatementFinished` quotes it.
    pub id: u64,
    pub protocol: Protocol,
    /// The SQL text (for an Execute, the text its portal's statement was
    /// prepared with; for a FunctionCall, `<function call OID>`).
    pub sql: Arc<str>,
    /// Extended protocol: the prepared statement's name ("" is unnamed).
    pub statement_name: Option<String>,
    /// Extended protocol: the portal's name ("" is unnamed).
    pub portal: Option<String>,
    pub parameter_count: usize,
    /// The parameter values, only if [`super::SessionOptions::record_parameters`].
    pub parameters: Option<Vec<Option<Bytes>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementFinished {
    pub id: u64,
    pub outcome: Outcome,
    /// Rows: the count in each CommandComplete tag that carries one
    /// (SELECT, INSERT, UPDATE, DELETE, MERGE, COPY, FETCH, MOVE), else the
    /// DataRows counted for that command.
    pub rows: u64,
    /// The CommandComplete tags, in order (several for a multi-statement Query).
    pub tags: Vec<String>,
    /// DataRows a [`super::Hooks::rewrite_row`] hook changed.
    pub rewritten_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Execute hit its row limit (PortalSuspended); a later Execute goes on.
    Suspended,
    /// The server answered with an error.
    Error {
        code: String,
        message: String,
    },
    /// A hook refused the statement; it never reached the server.
    Blocked {
        rule: String,
        reason: String,
    },
    /// Not run: an earlier error in the same extended-query batch made the
    /// server skip to Sync.
    Skipped,
}
