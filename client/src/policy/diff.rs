//! What applying a policy file changes: a pure function of the file and the
//! gateway's current policy (with versions), field by field.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::model::{Access, ConnectionSpec, PolicyFile, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Connection,
    /// A connection's MFA and approval requirements.
    Access,
    Rule,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Connection => "connection",
            Kind::Access => "access of connection",
            Kind::Rule => "rule",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Change,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Dotted for nested fields (`approval.window_secs`).
    pub field: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub op: Op,
    pub fields: Vec<FieldChange>,
    /// The version to write over (compare-and-set); 0 for connections, which
    /// have none, and for new objects.
    pub version: u64,
}

/// The file was written against an older state of an object it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: Kind,
    pub name: String,
    pub file_version: u64,
    /// 0: the object no longer exists.
    pub current_version: u64,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.current_version == 0 {
            write!(
                f,
                "{} {} was deleted since version {} was exported",
                self.kind.as_str(),
                self.name,
                self.file_version
            )
        } else {
            write!(
                f,
                "{} {} changed since it was exported (file: version {}, gateway: version {})",
                self.kind.as_str(),
                self.name,
                self.file_version,
                self.current_version
            )
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
}

/// Compares `desired` with `current` (whose versions are the gateway's).
/// Objects missing from `desired` are removed only with `prune`.
pub fn plan(desired: &PolicyFile, current: &PolicyFile, prune: bool) -> Plan {
    let mut plan = Plan::default();
    let current_connections: BTreeMap<&str, &ConnectionSpec> = current
        .connections
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for want in &desired.connections {
        let have = current_connections.get(want.name.as_str()).copied();
        let changed = compare(
            Kind::Connection,
            &want.name,
            have.map(connection_fields),
            Some(connection_fields(want)),
            0,
        );
        plan.changes.extend(changed);
        let have_access = have.map(|c| &c.access);
        let current_version = have_access.and_then(|a| a.version).unwrap_or(0);
        let from = have_access.filter(|a| !a.is_default()).map(access_fields);
        let to = (!want.access.is_default()).then(|| access_fields(&want.access));
        if let Some(change) = compare(Kind::Access, &want.name, from, to, current_version) {
            plan.check(&change, want.access.version, current_version);
            plan.changes.push(change);
        }
    }
    let current_rules: BTreeMap<&str, &Rule> =
        current.rules.iter().map(|r| (r.name.as_str(), r)).collect();
    for want in &desired.rules {
        let have = current_rules.get(want.name.as_str()).copied();
        let current_version = have.and_then(|r| r.version).unwrap_or(0);
        let change = compare(
            Kind::Rule,
            &want.name,
            have.map(rule_fields),
            Some(rule_fields(want)),
            current_version,
        );
        if let Some(change) = change {
            plan.check(&change, want.version, current_version);
            plan.changes.push(change);
        }
    }
    if prune {
        for have in &current.rules {
            if desired.rule(&have.name).is_none() {
                plan.changes.extend(compare(
                    Kind::Rule,
                    &have.name,
                    Some(rule_fields(have)),
                    None,
                    have.version.unwrap_or(0),
                ));
            }
        }
        for have in &current.connections {
            if desired.connection(&have.name).is_some() {
                continue;
            }
            if !have.access.is_default() {
                plan.changes.extend(compare(
                    Kind::Access,
                    &have.name,
                    Some(access_fields(&have.access)),
                    None,
                    have.access.version.unwrap_or(0),
                ));
            }
            plan.changes.extend(compare(
                Kind::Connection,
                &have.name,
                Some(connection_fields(have)),
                None,
                0,
            ));
        }
    }
    plan
}

impl Plan {
    /// A change to an object the file names a version of must start from it.
    fn check(&mut self, change: &Change, file_version: Option<u64>, current_version: u64) {
        if let Some(file_version) = file_version
            && file_version != current_version
        {
            self.conflicts.push(Conflict {
                kind: change.kind,
                name: change.name.clone(),
                file_version,
                current_version,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The order to apply in: what others depend on first, removals last.
    pub fn in_apply_order(&self) -> Vec<&Change> {
        let phase = |c: &Change| match (c.op, c.kind) {
            (Op::Add | Op::Change, Kind::Connection) => 0,
            (Op::Add | Op::Change, Kind::Access) => 1,
            (Op::Add | Op::Change, Kind::Rule) => 2,
            (Op::Remove, Kind::Rule) => 3,
            (Op::Remove, Kind::Access) => 4,
            (Op::Remove, Kind::Connection) => 5,
        };
        let mut changes: Vec<&Change> = self.changes.iter().collect();
        changes.sort_by_key(|c| phase(c));
        changes
    }

    pub fn summary(&self) -> String {
        if self.changes.is_empty() {
            return "No changes.".into();
        }
        let count = |op| self.changes.iter().filter(|c| c.op == op).count();
        format!(
            "{} to add, {} to change, {} to remove.",
            count(Op::Add),
            count(Op::Change),
            count(Op::Remove)
        )
    }
}

/// `+`, `~` and `-` lines, one indented line per field.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            let sign = match change.op {
                Op::Add => '+',
                Op::Change => '~',
                Op::Remove => '-',
            };
            writeln!(f, "{sign} {} {}", change.kind.as_str(), change.name)?;
            for field in &change.fields {
                let show = |v: &Option<Value>| v.as_ref().map_or("(none)".into(), Value::to_string);
                match change.op {
                    Op::Add => writeln!(f, "    {}: {}", field.field, show(&field.to))?,
                    Op::Remove => writeln!(f, "    {}: {}", field.field, show(&field.from))?,
                    Op::Change => writeln!(
                        f,
                        "    {}: {} -> {}",
                        field.field,
                        show(&field.from),
                        show(&field.to)
                    )?,
                }
            }
        }
        for conflict in &self.conflicts {
            writeln!(f, "! {conflict}")?;
        }
        write!(f, "{}", self.summary())
    }
}

type Fields = BTreeMap<String, Value>;

fn compare(
    kind: Kind,
    name: &str,
    from: Option<Fields>,
    to: Option<Fields>,
    version: u64,
) -> Option<Change> {
    let op = match (&from, &to) {
        (None, None) => return None,
        (None, Some(_)) => Op::Add,
        (Some(_), None) => Op::Remove,
        (Some(a), Some(b)) if a == b => return None,
        (Some(_), Some(_)) => Op::Change,
    };
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let mut names: Vec<&String> = from.keys().chain(to.keys()).collect();
    names.sort();
    names.dedup();
    let fields = names
        .into_iter()
        .filter(|n| from.get(*n) != to.get(*n))
        .map(|n| FieldChange {
            field: n.clone(),
            from: from.get(n).cloned(),
            to: to.get(n).cloned(),
        })
        .collect();
    Some(Change {
        kind,
        name: name.to_owned(),
        op,
        fields,
        version,
    })
}

/// An object's fields, nested objects flattened with dots; `null` and
/// absent are the same; names and versions are not fields.
fn fields<T: Serialize>(value: &T, skip: &[&str]) -> Fields {
    fn flatten(prefix: &str, value: Value, out: &mut Fields) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let name = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&name, value, out);
                }
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let mut out = Fields::new();
    if let Value::Object(mut map) = serde_json::to_value(value).expect("serialisable") {
        for name in skip {
            map.remove(*name);
        }
        flatten("", Value::Object(map), &mut out);
    }
    out
}

fn rule_fields(rule: &Rule) -> Fields {
    fields(rule, &["name", "version"])
}

fn connection_fields(connection: &ConnectionSpec) -> Fields {
    fields(connection, &["name", "access"])
}

fn access_fields(access: &Access) -> Fields {
    let mut fields = fields(access, &["version"]);
    fields
        .entry("require_mfa".into())
        .or_insert(Value::Bool(false));
    fields
}

#[cfg(test)]
mod tests;
