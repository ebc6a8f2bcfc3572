use super::*;

#[test]
fn simple_queries_report_text_rows_and_errors() {
    let mut script = Script::ready(AuditOnly);
    script.client(&[Query::new("select 1; insert into t values (1), (2)").encode()]);
    assert_eq!(script.session.phase(), Phase::SimpleQuery);
    script.server(&[
        RowDescription::default().encode(),
        row(&["1"]),
        CommandComplete::new("SELECT 1").encode(),
        CommandComplete::new("INSERT 0 2").encode(),
        idle(),
    ]);
    assert_eq!(script.session.phase(), Phase::Ready);
    script.client(&[Query::new("select nope").encode()]);
    script.server(&[error("42703"), idle()]);
    script.client(&[Query::new("").encode()]);
    script.server(&[EmptyQueryResponse.encode(), idle()]);

    assert_eq!(
        script.statements(),
        [
            ("select 1; insert into t values (1), (2)", Protocol::Simple),
            ("select nope", Protocol::Simple),
            ("", Protocol::Simple)
        ]
    );
    assert_eq!(
        script.finished(),
        [
            (1, Outcome::Ok, 3),
            (
                2,
                Outcome::Error {
                    code: "42703".into(),
                    message: "boom".into()
                },
                0
            ),
            (3, Outcome::Ok, 0)
        ]
    );
    let tags: Vec<_> = script
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StatementFinished(f) => Some(f.tags.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tags[0], ["SELECT 1", "INSERT 0 2"]);
}

#[test]
fn pipelined_executes_map_back_to_their_statements_in_order() {
    let mut script = Script::ready(AuditOnly);
    // Prepared once...
    script.client(&[parse("get", "select $1::int"), Sync.encode()]);
    script.server(&[ParseComplete.encode(), idle()]);
    // ...executed later, pipelined with an unnamed statement, one Sync.
    script.client(&[
        bind("", "get", &["7"]),
        execute(""),
        parse("", "update t set x = 1"),
        bind("p2", "", &[]),
        execute("p2"),
        Sync.encode(),
    ]);
    assert_eq!(script.session.phase(), Phase::ExtendedQuery);
    script.server(&[
        BindComplete.encode(),
        row(&["7"]),
        CommandComplete::new("SELECT 1").encode(),
        ParseComplete.encode(),
        BindComplete.encode(),
        CommandComplete::new("UPDATE 4").encode(),
        idle(),
    ]);
    assert_eq!(script.session.phase(), Phase::Ready);
    let started: Vec<_> = script
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StatementStarted(s) => Some((
                s.sql.to_string(),
                s.statement_name.clone(),
                s.portal.clone(),
                s.parameter_count,
                s.parameters.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            (
                "select $1::int".into(),
                Some("get".into()),
                Some("".into()),
                1,
                None
            ),
            (
                "update t set x = 1".into(),
                Some("".into()),
                Some("p2".into()),
                0,
                None
            ),
        ]
    );
    let ids: Vec<u64> = script
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StatementStarted(s) => Some(s.id),
            _ => None,
        })
        .collect();
    assert_eq!(
        script.finished(),
        [(ids[0], Outcome::Ok, 1), (ids[1], Outcome::Ok, 4)]
    );
    assert_eq!(script.session.in_flight(), 0);
}

#[test]
fn an_error_skips_the_rest_of_the_batch_like_the_server() {
    let mut script = Script::ready(AuditOnly);
    script.client(&[
        parse("a", "select 1/0"),
        bind("", "a", &[]),
        execute(""),
        parse("b", "select 2"),
        bind("", "b", &[]),
        execute(""),
        Sync.encode(),
        Query::new("select 3").encode(),
    ]);
    script.server(&[
        ParseComplete.encode(),
        BindComplete.encode(),
        error("22012"),
        idle(),
        RowDescription::default().encode(),
        row(&["3"]),
        CommandComplete::new("SELECT 1").encode(),
        idle(),
    ]);
    let outcomes: Vec<Outcome> = script.finished().into_iter().map(|f| f.1).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Error {
                code: "22012".into(),
                message: "boom".into()
            },
            Outcome::Skipped,
            Outcome::Ok
        ]
    );
    // "b" never reached the server's catalogue: a later Bind to it would fail.
    assert_eq!(script.session.prepared_statements(), 1);
    assert_eq!(script.session.phase(), Phase::Ready);
}

#[test]
fn suspended_portals_and_closes() {
    let mut script = Script::ready(AuditOnly);
    script.client(&[Query::new("begin").encode()]);
    script.server(&[
        CommandComplete::new("BEGIN").encode(),
        ready(TransactionStatus::InTransaction),
    ]);
    script.client(&[
        parse("", "select generate_series(1, 3)"),
        bind("c", "", &[]),
        Execute {
            portal: "c".into(),
            max_rows: 2,
        }
        .encode(),
        Sync.encode(),
    ]);
    script.server(&[
        ParseComplete.encode(),
        BindComplete.encode(),
        row(&["1"]),
        row(&["2"]),
        PortalSuspended.encode(),
        ready(TransactionStatus::InTransaction),
    ]);
    script.client(&[
        execute("c"),
        Close {
            target: Target::Portal,
            name: "c".into(),
        }
        .encode(),
        Sync.encode(),
    ]);
    script.server(&[
        row(&["3"]),
        CommandComplete::new("SELECT 1").encode(),
        CloseComplete.encode(),
        ready(TransactionStatus::InTransaction),
    ]);
    assert_eq!(
        script.statements()[1..],
        [
            ("select generate_series(1, 3)", Protocol::Extended),
            ("select generate_series(1, 3)", Protocol::Extended)
        ]
    );
    let outcomes: Vec<(Outcome, u64)> = script.finished().into_iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(
        outcomes,
        [(Outcome::Ok, 0), (Outcome::Suspended, 2), (Outcome::Ok, 1)]
    );
    assert_eq!(
        script.session.transaction_status(),
        TransactionStatus::InTransaction
    );
}

#[test]
fn copy_in_and_out_phases() {
    let mut script = Script::ready(AuditOnly);
    script.client(&[Query::new("copy t from stdin").encode()]);
    script.server(&[CopyInResponse::default().encode()]);
    assert_eq!(script.session.phase(), Phase::CopyIn);
    let data = CopyData {
        data: Bytes::from_static(b"1\n2\n"),
    };
    script.client(&[data.encode(), CopyDone.encode()]);
    assert_eq!(script.session.phase(), Phase::SimpleQuery);
    script.server(&[CommandComplete::new("COPY 2").encode(), idle()]);
    script.client(&[Query::new("copy t to stdout").encode()]);
    script.server(&[CopyOutResponse::default().encode(), data.encode()]);
    assert_eq!(script.session.phase(), Phase::CopyOut);
    script.server(&[
        CopyDone.encode(),
        CommandComplete::new("COPY 2").encode(),
        idle(),
    ]);
    assert_eq!(script.session.phase(), Phase::Ready);
    let rows: Vec<u64> = script.finished().into_iter().map(|f| f.2).collect();
    assert_eq!(rows, [2, 2]);
}

#[test]
fn copy_through_the_extended_protocol_with_syncs_the_server_ignores() {
    let mut script = Script::ready(AuditOnly);
    // As libpq sends it: the whole batch, then data, CopyDone and a second Sync.
    script.client(&[
        parse("", "copy t from stdin"),
        bind("", "", &[]),
        execute(""),
        Sync.encode(),
    ]);
    script.server(&[
        ParseComplete.encode(),
        BindComplete.encode(),
        CopyInResponse::default().encode(),
    ]);
    assert_eq!(script.session.phase(), Phase::CopyIn);
    script.client(&[
        CopyData {
            data: Bytes::from_static(b"1\n"),
        }
        .encode(),
        CopyDone.encode(),
        Sync.encode(),
    ]);
    script.server(&[CommandComplete::new("COPY 1").encode(), idle()]);
    assert_eq!(script.session.phase(), Phase::Ready);
    assert_eq!(script.session.in_flight(), 0);
    script.client(&[Query::new("select 1").encode()]);
    script.server(&[CommandComplete::new("SELECT 1").encode(), idle()]);
    let outcomes: Vec<_> = script.finished().into_iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(outcomes, [(Outcome::Ok, 1), (Outcome::Ok, 1)]);
    assert_eq!(script.session.phase(), Phase::Ready);
}

#[test]
fn parameters_are_recorded_only_when_asked() {
    let mut session = Session::new(
        AuditOnly,
        SessionOptions {
            record_parameters: true,
            ..SessionOptions::default()
        },
    );
    let mut script = Script::ready(AuditOnly);
    std::mem::swap(&mut script.session, &mut session);
    script.client(&[StartupMessage::new(vec![("user".into(), "a".into())]).encode()]);
    script.server(&[Authentication::Ok.encode(), idle()]);
    script.client(&[
        parse("", "select $1"),
        bind("", "", &["secret"]),
        execute(""),
        Sync.encode(),
    ]);
    let parameters = script.events.iter().find_map(|e| match e {
        Event::StatementStarted(s) => s.parameters.clone(),
        _ => None,
    });
    assert_eq!(parameters, Some(vec![Some(Bytes::from_static(b"secret"))]));
}
