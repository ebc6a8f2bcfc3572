//! The policy file: access rules, and connections with their non-secret
//! settings and access requirements. Versions, when present, are the ones
//! the objects were exported at.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub groups: Vec<String>,
    pub connections: Vec<String>,
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The version exported; apply refuses to change a rule that moved since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A reference the agent resolves (`env:NAME`, `file:NAME`), never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// MFA and approval requirements; absent: none.
    #[serde(default, skip_serializing_if = "Access::is_default")]
    pub access: Access,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_mfa: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl Access {
    /// No requirements (whatever the version).
    pub fn is_default(&self) -> bool {
        !self.require_mfa && self.approval.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub approvers: String,
    pub window_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a policy file: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{kind} {name:?} appears twice")]
    Duplicate { kind: &'static str, name: String },
}

impl PolicyFile {
    pub fn parse(yaml: &str) -> Result<Self, FileError> {
        let file: PolicyFile = if yaml.trim().is_empty() {
            PolicyFile::default()
        } else {
            serde_yaml_ng::from_str(yaml)?
        };
        let mut seen = std::collections::BTreeSet::new();
        for rule in &file.rules {
            if !seen.insert(("rule", rule.name.as_str())) {
                return Err(FileError::Duplicate {
                    kind: "rule",
                    name: rule.name.clone(),
                });
            }
        }
        for connection in &file.connections {
            if !seen.insert(("connection", connection.name.as_str())) {
                return Err(FileError::Duplicate {
                    kind: "connection",
                    name: connection.name.clone(),
                });
            }
        }
        Ok(file)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("policy files serialise")
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionSpec> {
        self.connections.iter().find(|c| c.name == name)
    }
}
