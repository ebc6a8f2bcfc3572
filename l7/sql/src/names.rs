//! Object names as Postgres resolves them, and the patterns policies match
//! them with.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// An identifier as the database sees it: unquoted ones fold to lower case,
/// quoted ones stay exactly as written (`"Users"` is not `users`).
pub fn normalize_ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The parts of a name, normalized: `Public."Users"` is `["public", "Users"]`.
pub fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize_ident(ident),
            // Dialect-specific function-valued parts: keep their text, so an
            // allow list cannot match them by accident.
            other => other.to_string(),
        })
        .collect()
}

/// A table reference: optional schema (and database) and the table's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn from_parts(mut parts: Vec<String>) -> Option<Self> {
        let name = parts.pop()?;
        Some(Self {
            schema: parts.pop(),
            name,
        })
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// `*` matches any run of characters, `?` any one; everything else itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with backtracking to the last `*`: linear enough for
    // short names, and no recursion to blow up on hostile patterns.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A table pattern from a policy: `table` or `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    schema: Option<String>,
    table: String,
}

impl TablePattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let parts: Vec<&str> = pattern.split('.').collect();
        match parts.as_slice() {
            [table] if !table.is_empty() => Ok(Self {
                schema: None,
                table: (*table).to_owned(),
            }),
            [schema, table] if !schema.is_empty() && !table.is_empty() => Ok(Self {
                schema: Some((*schema).to_owned()),
                table: (*table).to_owned(),
            }),
            _ => Err(format!(
                "{pattern:?} is not a table pattern (`table` or `schema.table`)"
            )),
        }
    }

    /// Whether the pattern names a schema: then where unqualified names
    /// resolve matters, and guardrails keep `search_path` fixed.
    pub fn is_qualified(&self) -> bool {
        self.schema.is_some()
    }

    /// An unqualified reference counts as `public.<name>`: the default
    /// `search_path`, which guardrails keep from being changed when a rule
    /// names a schema.
    pub fn matches(&self, table: &TableName) -> bool {
        if !glob_matches(&self.table, &table.name) {
            return false;
        }
        match (&self.schema, &table.schema) {
            (None, _) => true,
            (Some(pattern), Some(schema)) => glob_matches(pattern, schema),
            (Some(pattern), None) => glob_matches(pattern, "public"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*", "anything", true),
            ("user*", "users", true),
            ("user?", "users", true),
            ("user?", "user", false),
            ("*_ssn", "employee_ssn", true),
            ("*_ssn", "ssn", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "x", false),
            ("Users", "users", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn table_patterns_read_unqualified_names_as_public() {
        let table = |schema: Option<&str>, name: &str| TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        };
        let cases = [
            ("users", table(None, "users"), true),
            ("users", table(Some("hr"), "users"), true),
            ("hr.users", table(Some("hr"), "users"), true),
            ("hr.users", table(Some("public"), "users"), false),
            ("hr.users", table(None, "users"), false),
            ("public.users", table(None, "users"), true),
            ("*.users", table(None, "users"), true),
            ("hr.*", table(Some("hr"), "payroll"), true),
            ("hr.*", table(Some("ops"), "payroll"), false),
            ("hr.*", table(None, "payroll"), false),
        ];
        for (pattern, name, expected) in cases {
            let parsed = TablePattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(&name), expected, "{pattern} vs {name}");
        }
        assert!(TablePattern::parse("a.b.c").is_err());
        assert!(TablePattern::parse(".x").is_err());
    }
}
