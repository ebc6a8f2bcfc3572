//! The SQL policy a connection carries, as the gateway sends it to the agent
//! with each session request (JSON) and as admins write it.

use serde::{Deserialize, Serialize};

/// What a statement does, as guardrails name it. One statement can involve
/// several (a `WITH ... DELETE` inside a `SELECT`, an `EXPLAIN ANALYZE UPDATE`):
/// every one is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// `COPY ... FROM STDIN`.
    CopyFrom,
    /// `COPY ... TO STDOUT`.
    CopyTo,
    /// `COPY ... TO/FROM PROGRAM`: runs a shell command on the database host.
    CopyProgram,
    /// `COPY ... TO/FROM 'file'`: reads or writes the database host's files.
    CopyFile,
    Create,
    Alter,
    Drop,
    Truncate,
    Grant,
    Revoke,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT and the like.
    Transaction,
    Set,
    Show,
    Explain,
    Prepare,
    Execute,
    /// DECLARE, FETCH, CLOSE of cursors.
    Cursor,
    Call,
    Lock,
    Vacuum,
    Analyze,
    Comment,
    Listen,
    Notify,
    /// Anything else the parser knows (named in the verdict's detail).
    Other,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::CopyFrom => "copy_from",
            StatementKind::CopyTo => "copy_to",
            StatementKind::CopyProgram => "copy_program",
            StatementKind::CopyFile => "copy_file",
            StatementKind::Create => "create",
            StatementKind::Alter => "alter",
            StatementKind::Drop => "drop",
            StatementKind::Truncate => "truncate",
            StatementKind::Grant => "grant",
            StatementKind::Revoke => "revoke",
            StatementKind::Transaction => "transaction",
            StatementKind::Set => "set",
            StatementKind::Show => "show",
            StatementKind::Explain => "explain",
            StatementKind::Prepare => "prepare",
            StatementKind::Execute => "execute",
            StatementKind::Cursor => "cursor",
            StatementKind::Call => "call",
            StatementKind::Lock => "lock",
            StatementKind::Vacuum => "vacuum",
            StatementKind::Analyze => "analyze",
            StatementKind::Comment => "comment",
            StatementKind::Listen => "listen",
            StatementKind::Notify => "notify",
            StatementKind::Other => "other",
        }
    }
}

/// Guardrails of one connection. The default is what a connection gets when
/// its admin said nothing: destructive and host-reaching statements refused,
/// UPDATE and DELETE only with a WHERE, unparsable statements refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardrailPolicy {
    /// Nothing that writes gets through. The agent also opens the database
    /// session read-only, so the database itself refuses writes that no
    /// parse can see (e.g. inside a function).
    pub read_only: bool,
    pub deny_kinds: Vec<StatementKind>,
    /// UPDATE and DELETE must have a WHERE clause.
    pub require_where: bool,
    /// If not empty, every table a statement touches must match one of these
    /// (`schema.table` or `table`, `*` and `?` as wildcards).
    pub allow_tables: Vec<String>,
    /// No table a statement touches may match one of these.
    pub deny_tables: Vec<String>,
    /// Regular expressions; a statement whose text matches one is refused.
    pub deny_patterns: Vec<String>,
    /// Let statements through that the SQL parser cannot read. Off by default:
    /// what cannot be read cannot be checked.
    pub allow_unparsed: bool,
}

impl Default for GuardrailPolicy {
    fn default() -> Self {
        Self {
            read_only: false,
            deny_kinds: vec![
                StatementKind::Drop,
                StatementKind::Truncate,
                StatementKind::Alter,
                StatementKind::Grant,
                StatementKind::Revoke,
                StatementKind::CopyProgram,
                StatementKind::CopyFile,
            ],
            require_where: true,
            allow_tables: Vec::new(),
            deny_tables: Vec::new(),
            deny_patterns: Vec::new(),
            allow_unparsed: false,
        }
    }
}

/// How a masked value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaskStyle {
    /// The whole value becomes `****`.
    #[default]
    Redact,
    /// Keeps the last four characters: `****1234`.
    KeepLast4,
}

/// Columns masked by name: `email`, `*_ssn`, `users.phone`, `public.users.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub column: String,
    #[serde(default)]
    pub style: MaskStyle,
}

/// Value detectors: whatever the column, values that look like these are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Email,
    /// 13 to 19 digits (spaces or dashes allowed) passing the Luhn check.
    CardNumber,
    /// International or North American phone numbers.
    Phone,
    /// US social security numbers (`123-45-6789`).
    UsSsn,
    /// UK national insurance numbers (`AB123456C`).
    UkNino,
    /// French social security numbers (NIR, 13 digits and a 2-digit key).
    FrNir,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CardNumber => "card_number",
            Detector::Phone => "phone",
            Detector::UsSsn => "us_ssn",
            Detector::UkNino => "uk_nino",
            Detector::FrNir => "fr_nir",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskingPolicy {
    pub columns: Vec<ColumnRule>,
    pub detectors: Vec<Detector>,
}

/// Everything the agent needs to enforce on one SQL session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlPolicy {
    pub guardrails: GuardrailPolicy,
    pub masking: MaskingPolicy,
    /// Audit events carry parameter values, not only their count.
    pub audit_parameters: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_from_json_with_defaults_and_refuse_typos() {
        let policy: SqlPolicy = serde_json::from_str(
            r#"{"guardrails": {"read_only": true, "deny_tables": ["payroll.*"]},
                "masking": {"columns": [{"column": "*.ssn", "style": "keep_last4"}],
                            "detectors": ["email", "card_number"]}}"#,
        )
        .unwrap();
        assert!(policy.guardrails.read_only);
        assert!(policy.guardrails.require_where, "defaults fill the rest");
        assert!(
            policy
                .guardrails
                .deny_kinds
                .contains(&StatementKind::CopyProgram)
        );
        assert_eq!(policy.masking.columns[0].style, MaskStyle::KeepLast4);
        assert_eq!(policy.masking.detectors.len(), 2);
        let typo = serde_json::from_str::<SqlPolicy>(r#"{"guardrails": {"readonly": true}}"#);
        assert!(typo.unwrap_err().to_string().contains("readonly"));
        let unknown = serde_json::from_str::<SqlPolicy>(r#"{"masking": {"detectors": ["dna"]}}"#);
        assert!(unknown.is_err());
    }
}
