use serde_json::json;

use super::*;
use crate::policy::model::Approval;

fn rule(name: &str, actions: &[&str], version: Option<u64>) -> Rule {
    Rule {
        name: name.into(),
        groups: vec!["devs".into()],
        connections: vec!["*".into()],
        actions: actions.iter().map(|a| a.to_string()).collect(),
        description: String::new(),
        version,
    }
}

fn connection(name: &str, target: &str) -> ConnectionSpec {
    ConnectionSpec {
        name: name.into(),
        kind: "tcp".into(),
        target: target.into(),
        agent: "a1".into(),
        database: None,
        credential: None,
        tls: None,
        policy: None,
        access: Access::default(),
    }
}

fn with_access(
    mut c: ConnectionSpec,
    mfa: bool,
    approvers: Option<&str>,
    version: Option<u64>,
) -> ConnectionSpec {
    c.access = Access {
        require_mfa: mfa,
        approval: approvers.map(|a| Approval {
            approvers: a.into(),
            window_secs: 3600,
        }),
        version,
    };
    c
}

fn file(rules: Vec<Rule>, connections: Vec<ConnectionSpec>) -> PolicyFile {
    PolicyFile { rules, connections }
}

/// A compact view of a plan: `op kind name version [field:from>to ...]`.
fn lines(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|f| {
                    let show = |v: &Option<Value>| v.as_ref().map_or("-".into(), Value::to_string);
                    format!("{}:{}>{}", f.field, show(&f.from), show(&f.to))
                })
                .collect();
            format!(
                "{:?} {:?} {} v{} [{}]",
                c.op,
                c.kind,
                c.name,
                c.version,
                fields.join(" ")
            )
        })
        .collect()
}

#[test]
fn plans() {
    let current = file(
        vec![
            rule("devs", &["connect"], Some(3)),
            rule("old", &["exec"], Some(1)),
        ],
        vec![
            with_access(connection("db", "h:1"), true, None, Some(2)),
            connection("gone", "h:9"),
        ],
    );
    let cases: Vec<(&str, PolicyFile, bool, Vec<&str>)> = vec![
        (
            "the same, without versions",
            file(
                vec![
                    rule("devs", &["connect"], None),
                    rule("old", &["exec"], None),
                ],
                vec![
                    with_access(connection("db", "h:1"), true, None, None),
                    connection("gone", "h:9"),
                ],
            ),
            true,
            vec![],
        ),
        ("the same, as exported", current.clone(), true, vec![]),
        (
            "an empty file leaves everything alone",
            PolicyFile::default(),
            false,
            vec![],
        ),
        (
            "an empty file with prune removes everything",
            PolicyFile::default(),
            true,
            vec![
                r#"Remove Rule devs v3 [actions:["connect"]>- connections:["*"]>- groups:["devs"]>-]"#,
                r#"Remove Rule old v1 [actions:["exec"]>- connections:["*"]>- groups:["devs"]>-]"#,
                r#"Remove Access db v2 [require_mfa:true>-]"#,
                r#"Remove Connection db v0 [agent:"a1">- kind:"tcp">- target:"h:1">-]"#,
                r#"Remove Connection gone v0 [agent:"a1">- kind:"tcp">- target:"h:9">-]"#,
            ],
        ),
        (
            "a rule's field changes",
            file(vec![rule("devs", &["connect", "exec"], Some(3))], vec![]),
            false,
            vec![r#"Change Rule devs v3 [actions:["connect"]>["connect","exec"]]"#],
        ),
        (
            "a new rule and connection",
            file(
                vec![rule("ops", &["admin"], None)],
                vec![connection("new", "h:2")],
            ),
            false,
            vec![
                r#"Add Connection new v0 [agent:->"a1" kind:->"tcp" target:->"h:2"]"#,
                r#"Add Rule ops v0 [actions:->["admin"] connections:->["*"] groups:->["devs"]]"#,
            ],
        ),
        (
            "a connection's target and access",
            file(
                vec![],
                vec![with_access(
                    connection("db", "h:2"),
                    false,
                    Some("dba"),
                    None,
                )],
            ),
            false,
            vec![
                r#"Change Connection db v0 [target:"h:1">"h:2"]"#,
                r#"Change Access db v2 [approval.approvers:->"dba" approval.window_secs:->3600 require_mfa:true>false]"#,
            ],
        ),
        (
            "access left out of the file means none",
            file(vec![], vec![connection("db", "h:1")]),
            false,
            vec![r#"Remove Access db v2 [require_mfa:true>-]"#],
        ),
        (
            "a description added",
            file(
                vec![Rule {
                    description: "why".into(),
                    ..rule("devs", &["connect"], None)
                }],
                vec![],
            ),
            false,
            vec![r#"Change Rule devs v3 [description:->"why"]"#],
        ),
        (
            "a policy field, flattened",
            file(
                vec![],
                vec![ConnectionSpec {
                    policy: Some(json!({"guardrails": {"read_only": true}})),
                    ..with_access(connection("db", "h:1"), true, None, None)
                }],
            ),
            false,
            vec![r#"Change Connection db v0 [policy.guardrails.read_only:->true]"#],
        ),
    ];
    for (case, desired, prune, expected) in cases {
        let plan = plan(&desired, &current, prune);
        assert_eq!(lines(&plan), expected, "{case}");
        assert!(plan.conflicts.is_empty(), "{case}: {:?}", plan.conflicts);
        assert_eq!(plan.is_empty(), expected.is_empty(), "{case}");
    }
}

#[test]
fn stale_versions_conflict_only_where_something_changes() {
    let current = file(
        vec![rule("devs", &["connect"], Some(4))],
        vec![with_access(connection("db", "h:1"), true, None, Some(2))],
    );
    type Expected<'a> = Vec<(Kind, &'a str, u64, u64)>;
    let cases: Vec<(&str, PolicyFile, Expected)> = vec![
        (
            "unchanged but stale: fine",
            file(vec![rule("devs", &["connect"], Some(3))], vec![]),
            vec![],
        ),
        (
            "changed and stale",
            file(vec![rule("devs", &["exec"], Some(3))], vec![]),
            vec![(Kind::Rule, "devs", 3, 4)],
        ),
        (
            "changed at the current version",
            file(vec![rule("devs", &["exec"], Some(4))], vec![]),
            vec![],
        ),
        (
            "deleted since export",
            file(vec![rule("ops", &["exec"], Some(2))], vec![]),
            vec![(Kind::Rule, "ops", 2, 0)],
        ),
        (
            "access changed and stale",
            file(
                vec![],
                vec![with_access(connection("db", "h:1"), false, None, Some(1))],
            ),
            vec![(Kind::Access, "db", 1, 2)],
        ),
    ];
    for (case, desired, expected) in cases {
        let plan = plan(&desired, &current, false);
        let conflicts: Expected = plan
            .conflicts
            .iter()
            .map(|c| (c.kind, c.name.as_str(), c.file_version, c.current_version))
            .collect();
        assert_eq!(conflicts, expected, "{case}");
    }
}

#[test]
fn apply_order_and_display() {
    let current = file(
        vec![rule("old", &["exec"], Some(1))],
        vec![connection("gone", "h:9")],
    );
    let desired = file(
        vec![rule("ops", &["admin"], None)],
        vec![with_access(connection("new", "h:2"), true, None, None)],
    );
    let plan = plan(&desired, &current, true);
    let order: Vec<(Op, Kind, &str)> = plan
        .in_apply_order()
        .into_iter()
        .map(|c| (c.op, c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (Op::Add, Kind::Connection, "new"),
            (Op::Add, Kind::Access, "new"),
            (Op::Add, Kind::Rule, "ops"),
            (Op::Remove, Kind::Rule, "old"),
            (Op::Remove, Kind::Connection, "gone"),
        ]
    );
    let shown = plan.to_string();
    assert!(
        shown.contains("+ connection new\n    agent: \"a1\"\n"),
        "{shown}"
    );
    assert!(
        shown.contains("+ access of connection new\n    require_mfa: true\n"),
        "{shown}"
    );
    assert!(shown.contains("- rule old\n"), "{shown}");
    assert!(
        shown.ends_with("3 to add, 0 to change, 2 to remove."),
        "{shown}"
    );
    assert_eq!(Plan::default().to_string(), "No changes.");
}

#[test]
fn files_parse_round_trip_and_reject_mistakes() {
    let yaml = r#"
rules:
  - name: devs
    groups: [devs]
    connections: ["pg-*"]
    actions: [connect, exec]
    version: 2
connections:
  - name: pg-prod
    kind: postgres
    target: db:5432
    agent: a1
    credential: env:PG
    policy: {guardrails: {read_only: true}}
    access:
      require_mfa: true
      approval: {approvers: dba, window_secs: 3600}
"#;
    let parsed = PolicyFile::parse(yaml).unwrap();
    assert_eq!(parsed.rules[0].version, Some(2));
    assert_eq!(
        parsed.connections[0]
            .access
            .approval
            .as_ref()
            .unwrap()
            .approvers,
        "dba"
    );
    assert_eq!(PolicyFile::parse(&parsed.to_yaml()).unwrap(), parsed);
    assert_eq!(PolicyFile::parse("").unwrap(), PolicyFile::default());
    for (bad, why) in [
        (
            "rules:\n  - name: a\n    groups: [g]\n    connections: ['*']\n    actions: [connect]\n    colour: red\n",
            "unknown field `colour`",
        ),
        (
            "rules:\n  - {name: a, groups: [g], connections: ['*'], actions: [x]}\n  - {name: a, groups: [g], connections: ['*'], actions: [x]}\n",
            "rule \"a\" appears twice",
        ),
        ("connections: 3\n", "invalid type"),
    ] {
        let err = PolicyFile::parse(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
}
