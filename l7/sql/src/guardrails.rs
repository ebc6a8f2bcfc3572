//! Guardrails: whether a SQL string may reach the database, decided on a real
//! parse. A pure function of the policy and the text; every statement in the
//! text, and every statement nested in those, must pass.

use regex::Regex;

use crate::analyze::{StatementFacts, analyze};
use crate::names::TablePattern;
use crate::policy::{GuardrailPolicy, StatementKind};

/// A policy that could not be compiled (a bad pattern): the connection's
/// sessions are refused rather than run unguarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("guardrails: {0}")]
    TablePattern(String),
    #[error("guardrails: deny pattern {pattern:?} is not a valid regular expression: {reason}")]
    Regex { pattern: String, reason: String },
}

/// Why a statement was refused: the rule (stable, for audit and metrics) and
/// what in the statement broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub rule: String,
    pub detail: String,
}

impl Blocked {
    fn new(rule: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            detail: detail.into(),
        }
    }

    /// The text for the client's error message.
    pub fn message(&self) -> String {
        format!(
            "blocked by Postern guardrail \"{}\": {}",
            self.rule, self.detail
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// May run; the facts go into the audit event.
    Allow(Vec<StatementFacts>),
    Block(Blocked),
}

/// Settings a read-only session may change: presentation and limits, none
/// that changes identity or the read-only mode itself.
const READ_ONLY_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "timezone",
    "work_mem",
];

/// Kinds that never write.
const READ_ONLY_KINDS: &[StatementKind] = &[
    StatementKind::Select,
    StatementKind::CopyTo,
    StatementKind::Transaction,
    StatementKind::Set,
    StatementKind::Show,
    StatementKind::Explain,
    StatementKind::Prepare,
    StatementKind::Execute,
    StatementKind::Cursor,
    StatementKind::Listen,
];

/// Functions that write, reach the host, or undo the database's own
/// read-only mode; refused in read-only sessions wherever they appear.
fn is_unsafe_function(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "set_config",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_advisory_lock",
        "pg_advisory_xact_lock",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
    ];
    const PREFIXES: &[&str] = &[
        "lo_",
        "dblink",
        "pg_read_",
        "pg_write",
        "pg_file_",
        "pg_ls_",
        "pg_stat_reset",
        "pg_create_",
        "pg_drop_",
        "pg_replication_",
        "pg_logical_",
        "pg_import_",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

pub struct Guardrails {
    policy: GuardrailPolicy,
    allow_tables: Vec<TablePattern>,
    deny_tables: Vec<TablePattern>,
    deny_patterns: Vec<Regex>,
    /// Some table rule names a schema: unqualified names must keep resolving
    /// the way the rules assume.
    schema_rules: bool,
}

/// Whether a statement may change where unqualified names resolve.
fn moves_search_path(facts: &StatementFacts) -> bool {
    facts.settings.iter().any(|s| s == "search_path")
        || facts.changes_identity_or_unknown_setting
        || facts.functions.contains("set_config")
}

impl Guardrails {
    pub fn new(policy: &GuardrailPolicy) -> Result<Self, PolicyError> {
        let tables = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| TablePattern::parse(p).map_err(PolicyError::TablePattern))
                .collect::<Result<Vec<_>, _>>()
        };
        let deny_patterns = policy
            .deny_patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| PolicyError::Regex {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow_tables = tables(&policy.allow_tables)?;
        let deny_tables = tables(&policy.deny_tables)?;
        let schema_rules = allow_tables
            .iter()
            .chain(&deny_tables)
            .any(TablePattern::is_qualified);
        Ok(Self {
            allow_tables,
            deny_tables,
            deny_patterns,
            schema_rules,
            policy: policy.clone(),
        })
    }

    pub fn check(&self, sql: &str) -> Verdict {
        if let Some(pattern) = self.deny_patterns.iter().find(|p| p.is_match(sql)) {
            return Verdict::Block(Blocked::new(
                "deny_pattern",
                format!("the statement matches {:?}", pattern.as_str()),
            ));
        }
        let statements = match analyze(sql) {
            Ok(statements) => statements,
            Err(e) if self.policy.allow_unparsed => {
                let _ = e;
                return Verdict::Allow(Vec::new());
            }
            Err(e) => {
                return Verdict::Block(Blocked::new(
                    "unparsed",
                    format!("{e}; statements that cannot be checked are refused"),
                ));
            }
        };
        for facts in &statements {
            if let Err(blocked) = self.check_statement(facts) {
                return Verdict::Block(blocked);
            }
        }
        Verdict::Allow(statements)
    }

    fn check_statement(&self, facts: &StatementFacts) -> Result<(), Blocked> {
        if let Some(kind) = facts
            .kinds
            .iter()
            .find(|k| self.policy.deny_kinds.contains(k))
        {
            return Err(Blocked::new(
                format!("deny_kind:{}", kind.as_str()),
                format!(
                    "{} statements are not allowed on this connection",
                    kind.as_str().to_uppercase()
                ),
            ));
        }
        if self.policy.require_where
            && let Some(kind) = facts.unfiltered.first()
        {
            return Err(Blocked::new(
                format!("require_where:{}", kind.as_str()),
                format!("{} without a WHERE clause", kind.as_str().to_uppercase()),
            ));
        }
        if let Some(table) = facts
            .tables
            .iter()
            .find(|t| self.deny_tables.iter().any(|p| p.matches(t)))
        {
            return Err(Blocked::new(
                "deny_tables",
                format!("table {table} is not accessible on this connection"),
            ));
        }
        if !self.allow_tables.is_empty()
            && let Some(table) = facts
                .tables
                .iter()
                .find(|t| !self.allow_tables.iter().any(|p| p.matches(t)))
        {
            return Err(Blocked::new(
                "allow_tables",
                format!("table {table} is not in this connection's allowed tables"),
            ));
        }
        if self.schema_rules && moves_search_path(facts) {
            return Err(Blocked::new(
                "search_path",
                "this connection's table rules name schemas, so search_path cannot be changed",
            ));
        }
        if self.policy.read_only {
            read_only(facts)?;
        }
        Ok(())
    }
}

fn read_only(facts: &StatementFacts) -> Result<(), Blocked> {
    let refuse = |detail: String| Err(Blocked::new("read_only", detail));
    if let Some(kind) = facts.kinds.iter().find(|k| !READ_ONLY_KINDS.contains(k)) {
        let name = match kind {
            StatementKind::Other => facts.other_names.first().cloned().unwrap_or_default(),
            kind => kind.as_str().to_uppercase(),
        };
        return refuse(format!(
            "{name} statements write or are not known to be read-only"
        ));
    }
    if facts.select_into {
        return refuse("SELECT INTO creates a table".into());
    }
    if facts.locking_read {
        return refuse("SELECT ... FOR UPDATE/SHARE takes row locks".into());
    }
    if facts.read_write_transaction {
        return refuse("a read-write transaction".into());
    }
    if facts.changes_identity_or_unknown_setting {
        return refuse("changing the role or this kind of setting".into());
    }
    if let Some(setting) = facts
        .settings
        .iter()
        .find(|s| !READ_ONLY_SETTINGS.contains(&s.as_str()))
    {
        return refuse(format!("setting {setting}"));
    }
    if let Some(function) = facts.functions.iter().find(|f| is_unsafe_function(f)) {
        return refuse(format!(
            "function {function}() writes or reaches the server"
        ));
    }
    Ok(())
}
