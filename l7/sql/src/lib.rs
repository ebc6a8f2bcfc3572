//! Postern's SQL policy, shared by the protocol engines (`l7/pg`, later
//! `l7/mysql`): [`Guardrails`] decide on a real parse (sqlparser, Postgres
//! dialect) whether a statement may reach the database, and a [`Masker`]
//! rewrites result values. Both are pure: no IO, no clock, no globals, so the
//! agent can run them per statement and the tests can pin every decision.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod fuzzing;
pub mod guardrails;
pub mod masking;
pub mod names;
pub mod policy;

pub use analyze::{StatementFacts, analyze};
pub use guardrails::{Blocked, Guardrails, PolicyError, Verdict};
pub use masking::{ColumnRef, MaskReason, Masker};
pub use policy::{
    ColumnRule, Detector, GuardrailPolicy, MaskStyle, MaskingPolicy, SqlPolicy, StatementKind,
};

/// SQLSTATE of a statement refused by a guardrail (insufficient_privilege).
pub const BLOCKED_SQLSTATE: &str = "42501";
