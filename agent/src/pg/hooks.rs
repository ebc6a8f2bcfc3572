//! The connection's SQL policy as session hooks: guardrails decide on every
//! statement before it reaches the database; masking rewrites result values.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use postern_l7_pg::session::{Hooks, RowContext, Statement, Verdict};
use postern_l7_sql::names::glob_matches;
use postern_l7_sql::{
    ColumnRef, Guardrails, MaskStyle, Masker, PolicyError, SqlPolicy, StatementKind,
};

/// Where a result column comes from: `(table OID, attribute number)` →
/// schema, table, column (resolved through the catalog, see `catalog`).
pub type SourceColumns = HashMap<(u32, i16), SourceColumn>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
}

/// Types whose binary format is their text (UTF-8): text, varchar, bpchar,
/// name, unknown, json.
const TEXT_LIKE_TYPES: &[u32] = &[25, 1043, 1042, 19, 705, 114];

pub struct SqlHooks {
    guardrails: Guardrails,
    masker: Masker,
    allow_function_calls: bool,
    pub sources: SourceColumns,
    /// Tables whose columns were looked up (found or not).
    pub resolved_tables: BTreeSet<u32>,
    /// Labels of the columns masked, per statement, for its audit event.
    masked: HashMap<u64, BTreeSet<String>>,
    /// Column names the rules protect (their last part, lower-cased, globs kept).
    protected_names: Vec<String>,
    /// Statements whose text names a protected column: their computed
    /// result columns (`lower(email)`, `max(email)`) are masked too.
    names_protected: BTreeSet<u64>,
}

impl SqlHooks {
    pub fn new(policy: &SqlPolicy) -> Result<Self, PolicyError> {
        Ok(Self {
            guardrails: Guardrails::new(&policy.guardrails)?,
            masker: Masker::new(&policy.masking)?,
            allow_function_calls: policy.guardrails.allow_unparsed && !policy.guardrails.read_only,
            sources: SourceColumns::new(),
            resolved_tables: BTreeSet::new(),
            masked: HashMap::new(),
            protected_names: policy
                .masking
                .columns
                .iter()
                .filter_map(|rule| rule.column.rsplit('.').next())
                .map(str::to_lowercase)
                .collect(),
            names_protected: BTreeSet::new(),
        })
    }

    /// Told of each statement before its rows arrive.
    pub fn statement_started(&mut self, statement_id: u64, sql: &str) {
        if !self.protected_names.is_empty()
            && identifiers(sql).any(|word| {
                self.protected_names
                    .iter()
                    .any(|pattern| glob_matches(pattern, &word))
            })
        {
            self.names_protected.insert(statement_id);
        }
    }

    /// Whether result columns must be traced to their table columns.
    pub fn needs_sources(&self) -> bool {
        self.masker.has_column_rules()
    }

    /// The columns masked in a statement's results (taken: asked once).
    pub fn take_masked(&mut self, statement_id: u64) -> Vec<String> {
        self.names_protected.remove(&statement_id);
        self.masked
            .remove(&statement_id)
            .map(|labels| labels.into_iter().collect())
            .unwrap_or_default()
    }

    fn check_sql(&self, sql: &str) -> Verdict {
        match self.guardrails.check(sql) {
            postern_l7_sql::Verdict::Block(blocked) => Verdict::Block {
                rule: blocked.rule,
                reason: blocked.detail,
            },
            postern_l7_sql::Verdict::Allow(facts) => {
                // COPY TO STDOUT sends rows as CopyData, which masking does not see.
                let copies_out = facts
                    .iter()
                    .any(|f| f.kinds.contains(&StatementKind::CopyTo));
                if copies_out && !self.masker.is_empty() {
                    Verdict::Block {
                        rule: "masking_copy".into(),
                        reason: "COPY ... TO STDOUT bypasses masking, which this connection applies; use SELECT".into(),
                    }
                } else {
                    Verdict::Allow
                }
            }
        }
    }
}

impl Hooks for SqlHooks {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict {
        match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => self.check_sql(sql),
            Statement::FunctionCall { function_oid, .. } if !self.allow_function_calls => {
                Verdict::Block {
                    rule: "function_call".into(),
                    reason: format!(
                        "fast-path call of function OID {function_oid} cannot be checked; call it from SQL"
                    ),
                }
            }
            Statement::FunctionCall { .. } => Verdict::Allow,
        }
    }

    fn wants_rows(&self) -> bool {
        !self.masker.is_empty()
    }

    fn rewrite_row(&mut self, row: RowContext<'_>, values: &mut [Option<Bytes>]) -> bool {
        let Some(columns) = row.columns else {
            // Rows nobody described: what they hold is unknown, so nothing
            // of them gets through.
            let masked = self.masked.entry(row.statement_id).or_default();
            masked.insert("*".into());
            values.iter_mut().for_each(|v| *v = None);
            return true;
        };
        let mut changed = false;
        for (field, value) in columns.fields.iter().zip(values.iter_mut()) {
            let Some(bytes) = value.as_ref() else {
                continue;
            };
            let source = (field.table_oid != 0)
                .then(|| self.sources.get(&(field.table_oid, field.column_attnum)))
                .flatten();
            let column = ColumnRef {
                label: &field.name,
                schema: source.map(|s| s.schema.as_str()),
                table: source.map(|s| s.table.as_str()),
                column: source.map(|s| s.column.as_str()),
            };
            // A computed column of a statement that names a protected
            // column may carry its values: masked whole (fail closed).
            let computed = field.table_oid == 0 && self.names_protected.contains(&row.statement_id);
            let rule = self
                .masker
                .column_rule(&column)
                .or(computed.then_some(MaskStyle::Redact));
            let textual = field.is_text() || TEXT_LIKE_TYPES.contains(&field.type_oid);
            let replacement = if textual {
                match std::str::from_utf8(bytes) {
                    Ok(text) => self
                        .masker
                        .mask(rule, text)
                        .map(|(masked, _)| Some(Bytes::from(masked))),
                    // Not text after all: a rule on it hides it whole.
                    Err(_) => rule.map(|_| None),
                }
            } else {
                // A binary value cannot be partly masked and stay decodable:
                // a rule on it makes it NULL.
                rule.map(|_| None)
            };
            if let Some(new_value) = replacement {
                *value = new_value;
                changed = true;
                self.masked
                    .entry(row.statement_id)
                    .or_default()
                    .insert(field.name.clone());
            }
        }
        changed
    }
}

/// The identifiers in SQL text, lower-cased (quoted ones as written): a
/// superset of the column names it uses, which is what failing closed needs.
fn identifiers(sql: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = sql.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some((start, c)) = chars.next() {
            if c == '"' {
                let mut word = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    word.push(c);
                }
                return Some(word);
            }
            if c.is_alphabetic() || c == '_' {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                return Some(sql[start..end].to_lowercase());
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_l7_pg::messages::{FieldDescription, RowDescription};

    fn field(
        name: &str,
        table_oid: u32,
        attnum: i16,
        type_oid: u32,
        format: i16,
    ) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid,
            column_attnum: attnum,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format,
        }
    }

    fn policy(json: &str) -> SqlPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn aliases_do_not_dodge_column_rules_and_binary_values_become_null() {
        let mut hooks = SqlHooks::new(&policy(
            r#"{"masking": {"columns": [{"column": "users.email"}, {"column": "salary"}]}}"#,
        ))
        .unwrap();
        assert!(hooks.needs_sources());
        hooks.sources.insert(
            (16384, 2),
            SourceColumn {
                schema: "public".into(),
                table: "users".into(),
                column: "email".into(),
            },
        );
        let description = RowDescription {
            fields: vec![
                field("contact", 16384, 2, 25, 0),
                field("salary", 0, 0, 23, 1),
                field("id", 16384, 1, 23, 0),
            ],
        };
        let mut values = vec![
            Some(Bytes::from_static(b"ann@example.com")),
            Some(Bytes::from_static(&[0, 0, 0, 7])),
            Some(Bytes::from_static(b"7")),
        ];
        let row = RowContext {
            statement_id: 3,
            columns: Some(&description),
        };
        assert!(hooks.rewrite_row(row, &mut values));
        assert_eq!(values[0].as_deref(), Some(&b"****"[..]));
        assert_eq!(values[1], None);
        assert_eq!(values[2].as_deref(), Some(&b"7"[..]));
        assert_eq!(hooks.take_masked(3), vec!["contact", "salary"]);
        assert!(hooks.take_masked(3).is_empty());
    }

    #[test]
    fn computed_columns_of_statements_naming_a_protected_column_are_masked() {
        let mut hooks = SqlHooks::new(&policy(
            r#"{"masking": {"columns": [{"column": "users.email"}, {"column": "*_ssn"}]}}"#,
        ))
        .unwrap();
        let words: Vec<String> =
            identifiers(r#"SELECT max("E-Mail"), lower(Email) FROM t"#).collect();
        assert_eq!(
            words,
            vec!["select", "max", "E-Mail", "lower", "email", "from", "t"]
        );
        hooks.statement_started(7, "select max(email), count(*) from users");
        hooks.statement_started(8, "select tax_ssn || 'x' from people");
        hooks.statement_started(9, "select now()");
        let description = RowDescription {
            fields: vec![field("max", 0, 0, 25, 0), field("count", 0, 0, 20, 1)],
        };
        for (id, expect_masked) in [(7, true), (8, true), (9, false)] {
            let mut values = vec![
                Some(Bytes::from_static(b"zed@example.com")),
                Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 2])),
            ];
            let row = RowContext {
                statement_id: id,
                columns: Some(&description),
            };
            assert_eq!(hooks.rewrite_row(row, &mut values), expect_masked, "{id}");
            if expect_masked {
                assert_eq!(values, vec![Some(Bytes::from_static(b"****")), None]);
            }
        }
    }

    #[test]
    fn undescribed_rows_are_withheld_and_copy_out_is_refused_under_masking() {
        let mut hooks = SqlHooks::new(&policy(r#"{"masking": {"detectors": ["email"]}}"#)).unwrap();
        let mut values = vec![Some(Bytes::from_static(b"x"))];
        let row = RowContext {
            statement_id: 1,
            columns: None,
        };
        assert!(hooks.rewrite_row(row, &mut values));
        assert_eq!(values, vec![None]);
        let verdict = hooks.check(&Statement::Query {
            sql: "COPY users TO STDOUT",
        });
        assert!(matches!(verdict, Verdict::Block { rule, .. } if rule == "masking_copy"));
        let verdict = hooks.check(&Statement::FunctionCall {
            function_oid: 764,
            arg_count: 1,
        });
        assert!(matches!(verdict, Verdict::Block { rule, .. } if rule == "function_call"));
        assert_eq!(
            hooks.check(&Statement::Query { sql: "SELECT 1" }),
            Verdict::Allow
        );
    }
}
