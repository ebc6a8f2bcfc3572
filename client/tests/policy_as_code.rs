//! `postern policy export` and `postern policy apply` with the real binary
//! against an in-process gateway: export, edit, a dry run that changes
//! nothing, apply, a round trip, idempotence, pruning, and a stale file
//! refused rather than overwriting a concurrent admin's change. Also
//! `postern audit --since/--until`.

mod common;

use common::{AGENT, Cluster};
use postern::policy::model::{Access, PolicyFile};

struct Admin<'a> {
    cluster: &'a Cluster,
}

impl Admin<'_> {
    /// Runs `postern ARGS` as the admin; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let c = self.cluster;
        common::run_postern(c.cli_env_as(&c.admin_token), args).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "postern {args:?} failed: {stderr}\n{stdout}");
        stdout
    }

    async fn export(&self) -> PolicyFile {
        let yaml = self.ok(&["policy", "export"]).await;
        PolicyFile::parse(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
    }

    fn write(&self, name: &str, file: &PolicyFile) -> String {
        let path = self.cluster.dir.path().join(name);
        std::fs::write(&path, file.to_yaml()).unwrap();
        path.display().to_string()
    }
}

/// Without versions and in name order, for comparing content.
fn unversioned(mut file: PolicyFile) -> PolicyFile {
    file.rules.sort_by(|a, b| a.name.cmp(&b.name));
    file.connections.sort_by(|a, b| a.name.cmp(&b.name));
    for rule in &mut file.rules {
        rule.version = None;
    }
    for connection in &mut file.connections {
        connection.access.version = None;
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_edit_apply_round_trip_and_refuse_stale_files() {
    let cluster = Cluster::start().await;
    cluster.add_connection("echo", "127.0.0.1:7", AGENT).await;
    let admin = Admin { cluster: &cluster };
    admin
        .ok(&[
            "rule",
            "put",
            "devs",
            "--group",
            "devs",
            "--connection",
            "pg-*",
            "--action",
            "connect",
        ])
        .await;

    let exported = admin.export().await;
    assert_eq!(
        exported
            .rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["devs", "testers"]
    );
    assert_eq!(exported.rule("devs").unwrap().version, Some(1));
    let echo = exported
        .connection("echo")
        .expect("the connection is exported");
    assert_eq!(
        (echo.kind.as_str(), echo.target.as_str()),
        ("tcp", "127.0.0.1:7")
    );
    assert_eq!(echo.access, Access::default());

    // Edit: a rule changed, a rule and a connection (needing MFA) added, a target moved.
    let mut edited = exported.clone();
    edited.rules[0].actions.push("exec".into());
    edited.rules.push(postern::policy::model::Rule {
        name: "ops".into(),
        groups: vec!["ops".into()],
        connections: vec!["*".into()],
        actions: vec!["admin".into()],
        description: "operators".into(),
        version: None,
    });
    let mut ssh = echo.clone();
    ssh.name = "ssh-box".into();
    ssh.target = "10.0.0.9:22".into();
    ssh.access.require_mfa = true;
    edited.connections.push(ssh);
    edited.connections[0].target = "127.0.0.1:9".into();
    let path = admin.write("edited.yaml", &edited);

    let shown = admin.ok(&["policy", "apply", &path, "--dry-run"]).await;
    for line in [
        "~ connection echo\n    target: \"127.0.0.1:7\" -> \"127.0.0.1:9\"\n",
        "+ connection ssh-box\n",
        "+ access of connection ssh-box\n    require_mfa: true\n",
        "~ rule devs\n    actions: [\"connect\"] -> [\"connect\",\"exec\"]\n",
        "+ rule ops\n",
        "3 to add, 2 to change, 0 to remove.",
    ] {
        assert!(shown.contains(line), "{line:?} in:\n{shown}");
    }
    assert!(!shown.contains("Applied"), "{shown}");
    assert_eq!(admin.export().await, exported, "a dry run changes nothing");

    let applied = admin.ok(&["policy", "apply", &path]).await;
    assert!(
        applied.contains("3 to add, 2 to change") && applied.contains("Applied."),
        "{applied}"
    );
    let after = admin.export().await;
    assert_eq!(
        unversioned(after.clone()),
        unversioned(edited.clone()),
        "export round-trips"
    );
    assert_eq!(after.rule("devs").unwrap().version, Some(2));
    assert_eq!(after.connection("ssh-box").unwrap().access.version, Some(1));

    // Idempotent: the same file again (its versions are older now, but
    // nothing it says differs).
    let again = admin.ok(&["policy", "apply", &path]).await;
    assert_eq!(again.trim(), "No changes.", "{again}");

    // Objects not in the file stay, unless pruned.
    let mut without_ops = after.clone();
    without_ops.rules.retain(|r| r.name != "ops");
    let path = admin.write("without-ops.yaml", &without_ops);
    assert_eq!(
        admin.ok(&["policy", "apply", &path]).await.trim(),
        "No changes."
    );
    assert!(admin.export().await.rule("ops").is_some());
    let pruned = admin.ok(&["policy", "apply", &path, "--prune"]).await;
    assert!(
        pruned.contains("- rule ops\n") && pruned.contains("0 to add, 0 to change, 1 to remove."),
        "{pruned}"
    );
    assert!(admin.export().await.rule("ops").is_none());

    // A concurrent admin changes devs after the export...
    let stale = admin.export().await;
    admin
        .ok(&[
            "rule",
            "put",
            "devs",
            "--group",
            "devs",
            "--connection",
            "pg-*",
            "--action",
            "audit-read",
        ])
        .await;
    // ...so a file changing devs from the older version is refused, whole.
    let mut edit = stale.clone();
    edit.rules[0].description = "mine".into();
    edit.connections[0].target = "127.0.0.1:10".into();
    let path = admin.write("stale.yaml", &edit);
    let (ok, stdout, stderr) = admin.run(&["policy", "apply", &path]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(
            "! rule devs changed since it was exported (file: version 2, gateway: version 3)"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("nothing applied"), "{stderr}");
    let now = admin.export().await;
    assert_eq!(
        now.rule("devs").unwrap().actions,
        ["audit-read"],
        "the concurrent change stays"
    );
    assert_eq!(
        now.connection("echo").unwrap().target,
        "127.0.0.1:9",
        "nothing else was applied"
    );

    // Bad files name what is wrong.
    let bad = cluster.dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: x\n    colour: red\n").unwrap();
    let (ok, _, stderr) = admin.run(&["policy", "apply", bad.to_str().unwrap()]).await;
    assert!(!ok && stderr.contains("unknown field `colour`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_takes_since_and_until() {
    let cluster = Cluster::start().await;
    let admin = Admin { cluster: &cluster };
    admin
        .ok(&[
            "rule",
            "put",
            "devs",
            "--group",
            "devs",
            "--connection",
            "*",
            "--action",
            "connect",
        ])
        .await;
    let recent = admin.ok(&["audit", "--since", "1h"]).await;
    assert!(recent.contains("root rule.put devs"), "{recent}");
    let future = admin
        .ok(&["audit", "--since", "2999-01-01T00:00:00Z"])
        .await;
    assert_eq!(future.trim(), "", "{future}");
    let old = admin.ok(&["audit", "--until", "2000-01-01"]).await;
    assert_eq!(old.trim(), "", "{old}");
    let window = admin
        .ok(&[
            "audit",
            "--since",
            "2000-01-01T00:00:00+01:00",
            "--until",
            "2999-01-01T00:00:00Z",
        ])
        .await;
    assert!(window.contains("rule.put devs"), "{window}");
    let (ok, _, stderr) = admin.run(&["audit", "--since", "yesterday"]).await;
    assert!(
        !ok && stderr.contains("--since") && stderr.contains("RFC 3339"),
        "{stderr}"
    );
}
