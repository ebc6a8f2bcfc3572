use super::*;

/// Blocks any statement whose text contains "drop".
struct NoDrop;

impl Hooks for NoDrop {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict {
        let sql = match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => sql,
            Statement::FunctionCall { .. } => "drop",
        };
        if sql.to_lowercase().contains("drop") {
            Verdict::Block {
                rule: "no-drop".into(),
                reason: "DROP is not allowed".into(),
            }
        } else {
            Verdict::Allow
        }
    }
}

fn blocked() -> Bytes {
    ErrorResponse::blocked("no-drop", "DROP is not allowed").encode()
}

fn blocked_outcome() -> Outcome {
    Outcome::Blocked {
        rule: "no-drop".into(),
        reason: "DROP is not allowed".into(),
    }
}

#[test]
fn a_blocked_query_is_answered_locally_and_the_session_goes_on() {
    let mut script = Script::ready(NoDrop);
    script.client(&[Query::new("DROP TABLE t").encode()]);
    let (to_server, to_client, _) = script.take_keep_events();
    assert!(to_server.is_empty(), "never reaches the server");
    assert_eq!(to_client, concat(&[blocked(), idle()]));
    assert_eq!(script.session.phase(), Phase::Ready);
    script.client(&[Query::new("select 1").encode()]);
    script.server(&[CommandComplete::new("SELECT 1").encode(), idle()]);
    assert_eq!(
        script
            .finished()
            .into_iter()
            .map(|f| f.1)
            .collect::<Vec<_>>(),
        [blocked_outcome(), Outcome::Ok]
    );
    assert_eq!(script.statements()[0], ("DROP TABLE t", Protocol::Simple));
}

#[test]
fn a_blocked_query_waits_for_the_answers_before_it() {
    let mut script = Script::ready(NoDrop);
    script.client(&[
        Query::new("select 1").encode(),
        Query::new("drop table t").encode(),
    ]);
    assert!(
        script.to_client.is_empty(),
        "not before select 1 is answered"
    );
    script.server(&[
        CommandComplete::new("SELECT 1").encode(),
        ready(TransactionStatus::InTransaction),
    ]);
    let mut expected = concat(&[
        CommandComplete::new("SELECT 1").encode(),
        ready(TransactionStatus::InTransaction),
    ]);
    // The local ReadyForQuery carries the server's last transaction status.
    expected.extend(concat(&[
        blocked(),
        ready(TransactionStatus::InTransaction),
    ]));
    assert_eq!(script.to_client, expected);
    assert_eq!(script.to_server, Query::new("select 1").encode().to_vec());
}

#[test]
fn a_blocked_parse_discards_up_to_sync_and_the_session_stays_usable() {
    let mut script = Script::ready(NoDrop);
    script.client(&[
        parse("evil", "drop table t"),
        bind("", "evil", &[]),
        describe_portal(""),
        execute(""),
        Sync.encode(),
    ]);
    assert_eq!(
        script.to_server,
        Sync.encode().to_vec(),
        "only the Sync is forwarded"
    );
    assert_eq!(
        script.to_client,
        blocked().to_vec(),
        "the error comes at once"
    );
    script.server(&[idle()]);
    assert_eq!(script.to_client, concat(&[blocked(), idle()]));
    assert_eq!(script.session.phase(), Phase::Ready);
    // Executing the name later cannot reach the blocked text: it was never prepared.
    script.take();
    script.client(&[bind("", "evil", &[]), execute(""), Sync.encode()]);
    assert_eq!(
        script.statements(),
        [("<unknown prepared statement>", Protocol::Extended)]
    );
    assert_eq!(script.session.prepared_statements(), 0);
}

#[test]
fn a_blocked_parse_after_allowed_work_in_the_same_batch() {
    let mut script = Script::ready(NoDrop);
    script.client(&[
        parse("", "select 1"),
        bind("", "", &[]),
        execute(""),
        parse("", "drop table t"),
        bind("", "", &[]),
        execute(""),
        Sync.encode(),
    ]);
    assert_eq!(
        script.to_server,
        concat(&[
            parse("", "select 1"),
            bind("", "", &[]),
            execute(""),
            Sync.encode()
        ])
    );
    assert!(script.to_client.is_empty());
    let answers = [
        ParseComplete.encode(),
        BindComplete.encode(),
        row(&["1"]),
        CommandComplete::new("SELECT 1").encode(),
    ];
    script.server(&answers);
    script.server(&[idle()]);
    let mut expected = concat(&answers);
    expected.extend(concat(&[blocked(), idle()]));
    assert_eq!(
        script.to_client, expected,
        "in order: allowed answers, block, ready"
    );
    let outcomes: Vec<_> = script.finished().into_iter().map(|f| f.1).collect();
    assert_eq!(outcomes, [Outcome::Ok, blocked_outcome()]);
}

#[test]
fn no_second_error_when_the_server_failed_first() {
    let mut script = Script::ready(NoDrop);
    script.client(&[
        parse("", "select 1/0"),
        bind("", "", &[]),
        execute(""),
        parse("", "drop table t"),
        Sync.encode(),
    ]);
    script.server(&[
        ParseComplete.encode(),
        BindComplete.encode(),
        error("22012"),
        idle(),
    ]);
    assert_eq!(
        script.to_client,
        concat(&[
            ParseComplete.encode(),
            BindComplete.encode(),
            error("22012"),
            idle()
        ])
    );
    let outcomes: Vec<_> = script.finished().into_iter().map(|f| f.1).collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[1], blocked_outcome());
}

#[test]
fn a_blocked_function_call_is_answered_locally() {
    let mut script = Script::ready(NoDrop);
    let call = FunctionCall {
        function_oid: 764,
        arg_formats: vec![],
        args: vec![None],
        result_format: 0,
    };
    script.client(&[call.encode()]);
    assert!(script.to_server.is_empty());
    assert_eq!(script.to_client, concat(&[blocked(), idle()]));
    assert_eq!(
        script.statements(),
        [("<function call 764>", Protocol::FunctionCall)]
    );
}

impl<H: Hooks> Script<H> {
    fn take_keep_events(&mut self) -> (Vec<u8>, Vec<u8>, ()) {
        (
            std::mem::take(&mut self.to_server),
            std::mem::take(&mut self.to_client),
            (),
        )
    }
}
