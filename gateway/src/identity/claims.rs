//! Which claims of a verified token name the person and their groups.

use serde_json::Value;

/// Where the username and groups are found in a token's claims. Paths may be
/// dotted to reach into objects (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Default `groups`.
    pub groups_claim: String,
    /// Default `email`; `preferred_username` and then `sub` are the fallbacks.
    pub username_claim: String,
}

pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
pub const DEFAULT_USERNAME_CLAIM: &str = "email";

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            groups_claim: DEFAULT_GROUPS_CLAIM.into(),
            username_claim: DEFAULT_USERNAME_CLAIM.into(),
        }
    }
}

/// The value at a dotted path. A claim whose own name contains dots (as some
/// IdPs' namespaced claims do, `https://example.com/groups`) is found too:
/// the whole path is tried as one name first.
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut value = claims;
    for part in path.split('.') {
        value = value.get(part)?;
    }
    Some(value)
}

/// A claim holding one string or an array of strings, as a list; anything
/// else in the array is skipped, a missing or other claim is empty.
pub fn string_list(claims: &Value, path: &str) -> Vec<String> {
    match claim(claims, path) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn non_empty_string<'a>(claims: &'a Value, path: &str) -> Option<&'a str> {
    claim(claims, path)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

impl ClaimMapping {
    pub fn groups(&self, claims: &Value) -> Vec<String> {
        let mut groups = string_list(claims, &self.groups_claim);
        groups.sort();
        groups.dedup();
        groups
    }

    /// The person's name: the configured claim, else `preferred_username`,
    /// else `sub`. An `email` the IdP says is unverified is not used.
    pub fn username(&self, claims: &Value) -> Option<String> {
        [self.username_claim.as_str(), "preferred_username", "sub"]
            .into_iter()
            .filter(|path| {
                *path != "email" || claims.get("email_verified") != Some(&Value::Bool(false))
            })
            .find_map(|path| non_empty_string(claims, path))
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claim_mapping_table() {
        struct Case {
            groups_claim: &'static str,
            username_claim: &'static str,
            claims: Value,
            groups: &'static [&'static str],
            username: Option<&'static str>,
        }
        let cases = [
            Case {
                groups_claim: "groups",
                username_claim: "email",
                claims: json!({"sub": "1", "email": "a@x.io", "groups": ["dba", "dev", "dba"]}),
                groups: &["dba", "dev"],
                username: Some("a@x.io"),
            },
            Case {
                groups_claim: "groups",
                username_claim: "email",
                claims: json!({"sub": "1", "preferred_username": "alice", "groups": "dba"}),
                groups: &["dba"],
                username: Some("alice"),
            },
            Case {
                groups_claim: "realm_access.roles",
                username_claim: "email",
                claims: json!({"sub": "1", "realm_access": {"roles": ["admin", 7, null]}}),
                groups: &["admin"],
                username: Some("1"),
            },
            Case {
                groups_claim: "https://example.com/groups",
                username_claim: "upn",
                claims: json!({"sub": "1", "upn": "bob@corp", "https://example.com/groups": ["ops"]}),
                groups: &["ops"],
                username: Some("bob@corp"),
            },
            Case {
                groups_claim: "resource_access.postern.roles",
                username_claim: "email",
                claims: json!({"sub": "1", "email": "c@x.io", "email_verified": false,
                    "preferred_username": "carol", "resource_access": {"postern": {"roles": "rw"}}}),
                groups: &["rw"],
                username: Some("carol"),
            },
            Case {
                groups_claim: "groups",
                username_claim: "email",
                claims: json!({"sub": "1", "email": "  ", "groups": {"not": "a list"}}),
                groups: &[],
                username: Some("1"),
            },
            Case {
                groups_claim: "a.b",
                username_claim: "email",
                claims: json!({"a": "flat", "groups": ["x"]}),
                groups: &[],
                username: None,
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mapping = ClaimMapping {
                groups_claim: case.groups_claim.into(),
                username_claim: case.username_claim.into(),
            };
            assert_eq!(mapping.groups(&case.claims), case.groups, "case {i}");
            assert_eq!(
                mapping.username(&case.claims).as_deref(),
                case.username,
                "case {i}"
            );
        }
    }
}
