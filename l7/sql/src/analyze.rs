//! What a SQL string does, read from a real parse: every statement in it, every
//! statement nested in those (CTEs, EXPLAIN, PREPARE), the tables they touch,
//! the functions they call and whatever makes them write.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, FromTable, Query, Set, SetExpr, Statement, TableFactor,
    TransactionAccessMode, TransactionMode, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::names::{TableName, name_parts, normalize_ident};
use crate::policy::StatementKind;

/// Facts about one top-level statement, nested statements included.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatementFacts {
    /// The top-level statement's kind first, then nested ones.
    pub kinds: Vec<StatementKind>,
    /// Variant names of statements classified as `Other`, for messages.
    pub other_names: Vec<String>,
    pub tables: BTreeSet<TableName>,
    /// Functions called, lower-cased, schema stripped.
    pub functions: BTreeSet<String>,
    /// UPDATE or DELETE statements without a WHERE clause.
    pub unfiltered: Vec<StatementKind>,
    /// `SELECT ... INTO new_table`.
    pub select_into: bool,
    /// `SELECT ... FOR UPDATE/SHARE`.
    pub locking_read: bool,
    /// Session settings changed (`SET name ...`), lower-cased.
    pub settings: Vec<String>,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, or settings the parser does
    /// not name (e.g. dialect-specific session parameters).
    pub changes_identity_or_unknown_setting: bool,
    /// A transaction or session explicitly made read-write.
    pub read_write_transaction: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cannot parse the statement: {0}")]
pub struct UnparsedError(pub String);

impl From<ParserError> for UnparsedError {
    fn from(e: ParserError) -> Self {
        Self(e.to_string())
    }
}

/// Parses `sql` (Postgres dialect) and gathers facts per statement.
pub fn analyze(sql: &str) -> Result<Vec<StatementFacts>, UnparsedError> {
    let dialect = PostgreSqlDialect {};
    let statements = match Parser::parse_sql(&dialect, sql) {
        Ok(statements) => statements,
        // The parser wants `COPY ... FROM STDIN` terminated, as in a script;
        // on the wire the data follows in CopyData messages instead.
        Err(first) => Parser::parse_sql(&dialect, &format!("{sql};")).map_err(|_| first)?,
    };
    // The parser reads (or drops) whatever follows `FROM STDIN;` as inline
    // rows, but the server runs it as more statements once the copy is done:
    // text there cannot be checked, so it is not let through.
    let copies_from_stdin = statements.iter().any(|s| {
        matches!(
            s,
            Statement::Copy {
                target: CopyTarget::Stdin,
                ..
            }
        )
    });
    if copies_from_stdin && !nothing_after_stdin(sql) {
        return Err(UnparsedError(
            "text after COPY ... FROM STDIN is not checked".into(),
        ));
    }
    Ok(statements.iter().map(facts).collect())
}

/// Whether only semicolons, whitespace and comments follow the statement
/// that ends in `STDIN` (its options may follow the keyword).
fn nothing_after_stdin(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return false;
    };
    let Some(stdin) = tokens
        .iter()
        .position(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::STDIN))
    else {
        return false;
    };
    let rest = &tokens[stdin + 1..];
    let end = rest
        .iter()
        .position(|t| matches!(t, Token::SemiColon))
        .unwrap_or(rest.len());
    rest[end..]
        .iter()
        .all(|t| matches!(t, Token::SemiColon | Token::Whitespace(_)))
}

fn facts(statement: &Statement) -> StatementFacts {
    let mut collector = Collector::default();
    // The visitor never breaks.
    let _ = statement.visit(&mut collector);
    let mut facts = collector.facts;
    for cte in &collector.cte_names {
        facts
            .tables
            .retain(|t| !(t.schema.is_none() && &t.name == cte));
    }
    facts
}

#[derive(Default)]
struct Collector {
    facts: StatementFacts,
    /// CTE names shadow tables of the same name: not real tables.
    cte_names: BTreeSet<String>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let kind = classify(statement);
        if kind == StatementKind::Other {
            self.facts.other_names.push(variant_name(statement));
        }
        self.facts.kinds.push(kind);
        match statement {
            Statement::Update {
                selection: None, ..
            } => self.facts.unfiltered.push(StatementKind::Update),
            Statement::Delete(delete) if delete.selection.is_none() => {
                self.facts.unfiltered.push(StatementKind::Delete)
            }
            Statement::Delete(delete) => {
                // DELETE's target is not always visited as a relation.
                let from = match &delete.from {
                    FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
                };
                for table in from {
                    self.note_table_factor(&table.relation);
                }
            }
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } => {
                if let Some(table) = TableName::from_parts(name_parts(table_name)) {
                    self.facts.tables.insert(table);
                }
            }
            Statement::StartTransaction { modes, .. } => self.note_modes(modes),
            Statement::Set(set) => self.note_set(set),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.cte_names.insert(normalize_ident(&cte.alias.name));
            }
        }
        if !query.locks.is_empty() {
            self.facts.locking_read = true;
        }
        if selects_into(&query.body) {
            self.facts.select_into = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &sqlparser::ast::ObjectName) -> ControlFlow<()> {
        if let Some(table) = TableName::from_parts(name_parts(relation)) {
            self.facts.tables.insert(table);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            // `FROM pg_read_file(...)`: a table-valued function call.
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.note_function(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.note_function(&function.name);
        }
        ControlFlow::Continue(())
    }
}

impl Collector {
    fn note_function(&mut self, name: &sqlparser::ast::ObjectName) {
        if let Some(last) = name_parts(name).pop() {
            self.facts.functions.insert(last.to_lowercase());
        }
    }

    fn note_table_factor(&mut self, factor: &TableFactor) {
        if let TableFactor::Table { name, .. } = factor
            && let Some(table) = TableName::from_parts(name_parts(name))
        {
            self.facts.tables.insert(table);
        }
    }

    fn note_modes(&mut self, modes: &[TransactionMode]) {
        if modes.iter().any(|m| {
            matches!(
                m,
                TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
            )
        }) {
            self.facts.read_write_transaction = true;
        }
    }

    fn note_set(&mut self, set: &Set) {
        let mut name = |variable: &sqlparser::ast::ObjectName| {
            self.facts
                .settings
                .push(name_parts(variable).join(".").to_lowercase());
        };
        match set {
            Set::SingleAssignment { variable, .. } => name(variable),
            Set::ParenthesizedAssignments { variables, .. } => variables.iter().for_each(name),
            Set::MultipleAssignments { assignments } => {
                assignments.iter().for_each(|a| name(&a.name))
            }
            Set::SetTimeZone { .. } => self.facts.settings.push("timezone".into()),
            Set::SetNames { .. } | Set::SetNamesDefault {} => {
                self.facts.settings.push("client_encoding".into())
            }
            Set::SetTransaction { modes, .. } => self.note_modes(modes),
            _ => self.facts.changes_identity_or_unknown_setting = true,
        }
    }
}

fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        // Nested queries are visited on their own.
        _ => false,
    }
}

/// The enum variant's name (`CreateTable`, `AlterRole`): stable across
/// versions of the parser, unlike the variants' fields.
fn variant_name(statement: &Statement) -> String {
    let debug = format!("{statement:?}");
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub fn classify(statement: &Statement) -> StatementKind {
    use StatementKind as K;
    match statement {
        Statement::Query(_) => K::Select,
        Statement::Insert(_) => K::Insert,
        Statement::Update { .. } => K::Update,
        Statement::Delete(_) => K::Delete,
        Statement::Merge { .. } => K::Merge,
        Statement::Copy { target, to, .. } => match (target, to) {
            (CopyTarget::Program { .. }, _) => K::CopyProgram,
            (CopyTarget::File { .. }, _) => K::CopyFile,
            (_, true) => K::CopyTo,
            (_, false) => K::CopyFrom,
        },
        Statement::Truncate { .. } => K::Truncate,
        Statement::Grant { .. } => K::Grant,
        Statement::Revoke { .. } => K::Revoke,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => K::Transaction,
        Statement::Set(_) => K::Set,
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => K::Show,
        Statement::Explain { .. } | Statement::ExplainTable { .. } => K::Explain,
        Statement::Prepare { .. } => K::Prepare,
        Statement::Execute { .. } => K::Execute,
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => K::Cursor,
        Statement::Call(_) => K::Call,
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => K::Listen,
        Statement::NOTIFY { .. } => K::Notify,
        Statement::Comment { .. } => K::Comment,
        Statement::Analyze { .. } => K::Analyze,
        Statement::Vacuum(_) => K::Vacuum,
        Statement::LockTables { .. } => K::Lock,
        other => {
            let name = variant_name(other);
            if name.starts_with("Create") {
                K::Create
            } else if name.starts_with("Alter") || name.starts_with("Rename") {
                K::Alter
            } else if name.starts_with("Drop") {
                K::Drop
            } else if name.starts_with("Show") {
                K::Show
            } else {
                K::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementKind as K;

    fn one(sql: &str) -> StatementFacts {
        let mut all = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(all.len(), 1, "{sql}");
        all.remove(0)
    }

    #[test]
    fn statements_are_classified_with_what_they_nest() {
        let cases: &[(&str, &[StatementKind])] = &[
            ("SELECT 1", &[K::Select]),
            ("insert into t values (1)", &[K::Insert]),
            ("UPDATE t SET a = 1 WHERE id = 2", &[K::Update]),
            ("DELETE FROM t WHERE id = 2", &[K::Delete]),
            ("DROP TABLE t", &[K::Drop]),
            ("TRUNCATE t", &[K::Truncate]),
            ("ALTER TABLE t ADD COLUMN c int", &[K::Alter]),
            ("CREATE TABLE t (a int)", &[K::Create]),
            ("CREATE ROLE r", &[K::Create]),
            ("GRANT SELECT ON t TO r", &[K::Grant]),
            ("COPY t FROM STDIN", &[K::CopyFrom]),
            (
                "copy  t (a, b) from stdin with (format csv) ",
                &[K::CopyFrom],
            ),
            ("COPY t TO STDOUT", &[K::CopyTo]),
            ("COPY t TO PROGRAM 'rm -rf /'", &[K::CopyProgram]),
            ("COPY t FROM '/etc/passwd'", &[K::CopyFile]),
            ("BEGIN", &[K::Transaction]),
            ("SET search_path = app", &[K::Set]),
            ("SHOW search_path", &[K::Show]),
            (
                "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
                &[K::Select, K::Delete],
            ),
            ("EXPLAIN ANALYZE DELETE FROM t", &[K::Explain, K::Delete]),
            ("PREPARE p AS UPDATE t SET a = 1", &[K::Prepare, K::Update]),
        ];
        for (sql, kinds) in cases {
            assert_eq!(one(sql).kinds, *kinds, "{sql}");
        }
    }

    #[test]
    fn facts_gather_tables_functions_and_writes_anywhere() {
        let f = one(
            "SELECT a FROM Public.\"Users\" u JOIN orders o ON o.u = u.id WHERE x IN (SELECT y FROM hr.pay)",
        );
        let names: Vec<String> = f.tables.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["orders", "hr.pay", "public.Users"]);
        let f = one("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent");
        let names: Vec<String> = f.tables.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["orders"], "a CTE is not a table");
        let f = one("SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)");
        assert!(f.functions.contains("set_config"));
        let f = one("SELECT * FROM pg_read_file('/etc/passwd')");
        assert!(f.functions.contains("pg_read_file"));
        assert!(one("SELECT * INTO copy FROM t").select_into);
        assert!(one("SELECT * FROM t FOR UPDATE").locking_read);
        assert_eq!(one("UPDATE t SET a = 1").unfiltered, [K::Update]);
        assert_eq!(one("DELETE FROM t").unfiltered, [K::Delete]);
        assert!(one("DELETE FROM t").tables.iter().any(|t| t.name == "t"));
        assert!(one("BEGIN READ WRITE").read_write_transaction);
        assert!(
            one("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE").read_write_transaction
        );
        assert_eq!(
            one("SET default_transaction_read_only = off").settings,
            ["default_transaction_read_only"]
        );
        assert!(one("SET ROLE admin").changes_identity_or_unknown_setting);
    }

    #[test]
    fn several_statements_and_unparsable_text() {
        assert_eq!(analyze("SELECT 1; DROP TABLE t; -- bye").unwrap().len(), 2);
        assert!(analyze("SELEC 1").is_err());
        assert!(
            analyze("COPY t FROM STDIN; DROP TABLE t").is_err(),
            "what follows a COPY from the client runs as statements later"
        );
        assert!(analyze("COPY t FROM STDIN;\nDROP TABLE t;\nSELECT 1").is_err());
        assert!(analyze("COPY t FROM STDIN; -- done\n").is_ok());
        assert!(analyze("").unwrap().is_empty());
    }
}
