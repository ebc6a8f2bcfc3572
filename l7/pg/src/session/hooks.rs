//! How a caller (the guardrail and masking engine) takes part in a session.

use bytes::Bytes;

use crate::messages::RowDescription;

/// What a statement hook is asked about, before the statement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    /// A simple Query: may hold several statements.
    Query { sql: &'a str },
    /// A Parse: every SQL text that reaches the server through the extended
    /// protocol goes through here, so Bind/Execute of a prepared statement
    /// only ever run text that was checked.
    Parse {
        name: &'a str,
        sql: &'a str,
        param_types: &'a [u32],
    },
    /// A fast-path FunctionCall (calls a function by OID outside SQL).
    FunctionCall { function_oid: u32, arg_count: usize },
}

/// A hook's decision on a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refused: the client gets an ErrorResponse with SQLSTATE 42501 naming
    /// `rule`, `reason` as its detail, and the session stays usable.
    Block {
        rule: String,
        reason: String,
    },
}

/// The columns of the rows being returned, and which statement returns them.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    pub statement_id: u64,
    /// `None` if the server sent rows without any description the session
    /// could see (then a masking hook should fail closed). Format codes are
    /// the real ones: Bind's result formats are applied.
    pub columns: Option<&'a RowDescription>,
}

/// The caller's part in a session. Every method has a do-nothing default.
pub trait Hooks {
    /// Decides on a statement before it is sent to the server.
    fn check(&mut self, _statement: &Statement<'_>) -> Verdict {
        Verdict::Allow
    }

    /// Whether DataRows should be offered to [`Hooks::rewrite_row`]. When
    /// false the session never parses rows (they are forwarded as they are).
    fn wants_rows(&self) -> bool {
        false
    }

    /// May change a row's values (text-format columns are the ones to touch:
    /// see `FieldDescription::is_text`); returns whether it changed any. The
    /// session then sends a new DataRow with correct lengths.
    fn rewrite_row(&mut self, _row: RowContext<'_>, _values: &mut [Option<Bytes>]) -> bool {
        false
    }
}

/// Hooks that allow everything and change nothing: audit only.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditOnly;

impl Hooks for AuditOnly {}
