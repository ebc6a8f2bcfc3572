//! Access decisions: pure functions of a principal, what they ask for and a
//! policy snapshot. A denial says which rule or missing group refused it.

use postern_state::ConnectionKind;

use super::pattern;
use super::{AccessRule, Action, PolicySnapshot, Principal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule (or `admin API key`).
    Allow {
        by: String,
    },
    Deny {
        reason: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// The resource of things that belong to no connection.
pub const EVERYTHING: &str = "*";

fn covers(rule: &AccessRule, resource: &str) -> bool {
    rule.connections
        .iter()
        .any(|p| pattern::matches(p, resource))
}

fn member(principal: &Principal, rule: &AccessRule) -> bool {
    rule.groups.iter().any(|g| principal.groups.contains(g))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// May `principal` do `action` on `resource` (a connection name, or
/// [`EVERYTHING`])? Admin API keys may do everything.
pub fn decide(
    principal: &Principal,
    action: Action,
    resource: &str,
    rules: &[AccessRule],
) -> Decision {
    if principal.is_admin_key() {
        return Decision::Allow {
            by: "admin API key".into(),
        };
    }
    let relevant: Vec<&AccessRule> = rules
        .iter()
        .filter(|r| r.actions.contains(&action) && covers(r, resource))
        .collect();
    if let Some(rule) = relevant.iter().find(|r| member(principal, r)) {
        return Decision::Allow {
            by: rule.name.clone(),
        };
    }
    let groups = list(&principal.groups);
    let reason = if relevant.is_empty() {
        format!(
            "no access rule grants {action} on {resource:?} (your groups: {groups}); ask an admin for a rule"
        )
    } else {
        let needs: Vec<String> = relevant
            .iter()
            .map(|r| format!("rule {:?} needs group {}", r.name, r.groups.join(" or ")))
            .collect();
        format!(
            "{} may not {action} on {resource:?}: {}; your groups: {groups}",
            principal.name,
            needs.join("; ")
        )
    };
    Decision::Deny { reason }
}

/// What happens to a request to open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionDecision {
    Allow {
        rule: String,
        /// No `exec`: a Postgres session where nothing may be written.
        read_only: bool,
        /// The approval the session rides on, if the connection needs one.
        review_id: Option<String>,
    },
    Deny {
        reason: String,
    },
    /// The rules allow it, but the login did not prove MFA.
    NeedsMfa {
        reason: String,
    },
    /// The rules allow it once someone from `approvers` approves.
    NeedsApproval {
        approvers: String,
        window_secs: u64,
    },
}

/// May `principal` open a session to the connection `name` of `kind` now?
/// Rules first, then the connection's MFA and approval requirements (which
/// bind admin keys too: a requirement is the connection's, not the rule's).
pub fn decide_session(
    principal: &Principal,
    name: &str,
    kind: ConnectionKind,
    snapshot: &PolicySnapshot,
    now_ms: i64,
) -> SessionDecision {
    let rule = match decide(principal, Action::Connect, name, &snapshot.rules) {
        Decision::Allow { by } => by,
        Decision::Deny { reason } => return SessionDecision::Deny { reason },
    };
    let access = snapshot.access_of(name);
    if access.require_mfa && !principal.mfa {
        return SessionDecision::NeedsMfa {
            reason: format!(
                "connection {name:?} requires MFA and your login did not use it: run `postern login <gateway-url> --mfa`"
            ),
        };
    }
    let review_id = match &access.approval {
        None => None,
        Some(policy) => match snapshot.grant_for(&principal.name, name, now_ms) {
            Some(grant) => Some(grant.review_id.clone()),
            None => {
                return SessionDecision::NeedsApproval {
                    approvers: policy.approvers.clone(),
                    window_secs: policy.window_secs,
                };
            }
        },
    };
    let read_only = kind == ConnectionKind::Postgres
        && !decide(principal, Action::Exec, name, &snapshot.rules).is_allowed();
    SessionDecision::Allow {
        rule,
        read_only,
        review_id,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ApprovalPolicy, ConnectionAccess, Credential, Grant};
    use super::*;

    fn rule(name: &str, groups: &[&str], connections: &[&str], actions: &[Action]) -> AccessRule {
        AccessRule {
            name: name.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            connections: connections.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
            description: String::new(),
        }
    }

    fn person(groups: &[&str], mfa: bool) -> Principal {
        Principal {
            name: "alice".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            mfa,
            credential: Credential::Oidc { expires_at_ms: 0 },
        }
    }

    fn rules() -> Vec<AccessRule> {
        use Action::*;
        vec![
            rule("devs-staging", &["dev"], &["staging-*"], &[Connect, Exec]),
            rule("oncall-prod-read", &["oncall"], &["prod-*"], &[Connect]),
            rule("dba-prod", &["dba"], &["prod-*"], &[Connect, Exec]),
            rule("auditors", &["security"], &["*"], &[AuditRead]),
            rule("platform-admin", &["platform"], &["*"], &[Admin]),
            rule("team-admin", &["team-lead"], &["team-*"], &[Admin]),
        ]
    }

    #[test]
    fn decide_table() {
        use Action::*;
        struct Case {
            name: &'static str,
            groups: &'static [&'static str],
            action: Action,
            resource: &'static str,
            allowed_by: Option<&'static str>,
            reason_has: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "member of a matching rule",
                groups: &["dev"],
                action: Connect,
                resource: "staging-orders",
                allowed_by: Some("devs-staging"),
                reason_has: &[],
            },
            Case {
                name: "pattern does not match",
                groups: &["dev"],
                action: Connect,
                resource: "prod-orders",
                allowed_by: None,
                reason_has: &[
                    "rule \"oncall-prod-read\" needs group oncall",
                    "rule \"dba-prod\" needs group dba",
                    "your groups: dev",
                ],
            },
            Case {
                name: "second matching rule allows",
                groups: &["dba"],
                action: Exec,
                resource: "prod-orders",
                allowed_by: Some("dba-prod"),
                reason_has: &[],
            },
            Case {
                name: "rule for the connection lacks the action",
                groups: &["oncall"],
                action: Exec,
                resource: "prod-orders",
                allowed_by: None,
                reason_has: &["rule \"dba-prod\" needs group dba", "your groups: oncall"],
            },
            Case {
                name: "no rule at all names the action",
                groups: &[],
                action: Connect,
                resource: "billing",
                allowed_by: None,
                reason_has: &[
                    "no access rule grants connect on \"billing\"",
                    "your groups: none",
                ],
            },
            Case {
                name: "global admin covers everything",
                groups: &["platform"],
                action: Admin,
                resource: EVERYTHING,
                allowed_by: Some("platform-admin"),
                reason_has: &[],
            },
            Case {
                name: "scoped admin covers its connections",
                groups: &["team-lead"],
                action: Admin,
                resource: "team-db",
                allowed_by: Some("team-admin"),
                reason_has: &[],
            },
            Case {
                name: "scoped admin is not global admin",
                groups: &["team-lead"],
                action: Admin,
                resource: EVERYTHING,
                allowed_by: None,
                reason_has: &["rule \"platform-admin\" needs group platform"],
            },
            Case {
                name: "audit read",
                groups: &["security"],
                action: AuditRead,
                resource: EVERYTHING,
                allowed_by: Some("auditors"),
                reason_has: &[],
            },
            Case {
                name: "auditors cannot connect",
                groups: &["security"],
                action: Connect,
                resource: "prod-orders",
                allowed_by: None,
                reason_has: &["needs group oncall"],
            },
        ];
        let rules = rules();
        for case in cases {
            let got = decide(
                &person(case.groups, false),
                case.action,
                case.resource,
                &rules,
            );
            match (case.allowed_by, &got) {
                (Some(by), Decision::Allow { by: got_by }) => {
                    assert_eq!(got_by, by, "{}", case.name)
                }
                (None, Decision::Deny { reason }) => {
                    for needle in case.reason_has {
                        assert!(
                            reason.contains(needle),
                            "{}: {reason:?} lacks {needle:?}",
                            case.name
                        );
                    }
                }
                _ => panic!("{}: got {got:?}", case.name),
            }
        }
    }

    #[test]
    fn admin_keys_may_do_everything_and_user_keys_need_rules() {
        let admin = Principal {
            name: "ops".into(),
            groups: vec![],
            mfa: false,
            credential: Credential::ApiKey { admin: true },
        };
        assert!(decide(&admin, Action::Admin, EVERYTHING, &[]).is_allowed());
        let user = Principal {
            credential: Credential::ApiKey { admin: false },
            ..admin
        };
        assert!(!decide(&user, Action::Connect, "x", &[]).is_allowed());
    }

    #[test]
    fn session_decision_table() {
        let mut snapshot = PolicySnapshot {
            rules: rules(),
            ..Default::default()
        };
        snapshot.access.insert(
            "prod-orders".into(),
            ConnectionAccess {
                require_mfa: true,
                approval: Some(ApprovalPolicy {
                    approvers: "dba".into(),
                    window_secs: 3600,
                }),
            },
        );
        snapshot.access.insert(
            "prod-mfa".into(),
            ConnectionAccess {
                require_mfa: true,
                approval: None,
            },
        );
        snapshot.grants.push(Grant {
            person: "alice".into(),
            connection: "prod-orders".into(),
            review_id: "r-1".into(),
            approved_by: "bob".into(),
            expires_at_ms: 2_000,
        });
        let pg = ConnectionKind::Postgres;
        let tcp = ConnectionKind::Tcp;
        let allow = |read_only, review: Option<&str>, rule: &str| SessionDecision::Allow {
            rule: rule.into(),
            read_only,
            review_id: review.map(str::to_owned),
        };
        let cases: Vec<(&str, Principal, &str, ConnectionKind, i64, SessionDecision)> = vec![
            (
                "connect without exec is read-only on postgres",
                person(&["oncall"], true),
                "prod-mfa",
                pg,
                0,
                allow(true, None, "oncall-prod-read"),
            ),
            (
                "tcp has no read-only",
                person(&["oncall"], true),
                "prod-mfa",
                tcp,
                0,
                allow(false, None, "oncall-prod-read"),
            ),
            (
                "exec makes it read-write",
                person(&["dba"], true),
                "prod-mfa",
                pg,
                0,
                allow(false, None, "dba-prod"),
            ),
            (
                "no mfa",
                person(&["dba"], false),
                "prod-mfa",
                pg,
                0,
                SessionDecision::NeedsMfa {
                    reason: "connection \"prod-mfa\" requires MFA and your login did not use it: run `postern login <gateway-url> --mfa`".into(),
                },
            ),
            (
                "approval granted and in its window",
                person(&["dba"], true),
                "prod-orders",
                pg,
                1_999,
                allow(false, Some("r-1"), "dba-prod"),
            ),
            (
                "approval window over",
                person(&["dba"], true),
                "prod-orders",
                pg,
                2_000,
                SessionDecision::NeedsApproval {
                    approvers: "dba".into(),
                    window_secs: 3600,
                },
            ),
            (
                "rules come first: no rule, no approval asked",
                person(&["dev"], true),
                "prod-orders",
                pg,
                0,
                SessionDecision::Deny {
                    reason: "alice may not connect on \"prod-orders\": rule \"oncall-prod-read\" needs group oncall; rule \"dba-prod\" needs group dba; your groups: dev".into(),
                },
            ),
        ];
        for (name, principal, connection, kind, now, expected) in cases {
            assert_eq!(
                decide_session(&principal, connection, kind, &snapshot, now),
                expected,
                "{name}"
            );
        }
        // Someone else's grant is not yours.
        let mut bob = person(&["dba"], true);
        bob.name = "bob".into();
        assert!(matches!(
            decide_session(&bob, "prod-orders", pg, &snapshot, 0),
            SessionDecision::NeedsApproval { .. }
        ));
    }
}
