use super::*;

/// Masks every text column named "email"; counts what it saw.
#[derive(Default)]
struct MaskEmail {
    seen_without_columns: usize,
}

impl Hooks for MaskEmail {
    fn wants_rows(&self) -> bool {
        true
    }

    fn rewrite_row(&mut self, row: RowContext<'_>, values: &mut [Option<Bytes>]) -> bool {
        let Some(columns) = row.columns else {
            self.seen_without_columns += 1;
            return false;
        };
        let mut changed = false;
        for (field, value) in columns.fields.iter().zip(values.iter_mut()) {
            if field.name == "email" && field.is_text() && value.is_some() {
                *value = Some(Bytes::from_static(b"***"));
                changed = true;
            }
        }
        changed
    }
}

fn columns(names: &[&str]) -> RowDescription {
    crate::messages::row_description::text_columns(names)
}

#[test]
fn simple_query_rows_are_rewritten_with_correct_lengths() {
    let mut script = Script::ready(MaskEmail::default());
    script.client(&[Query::new("select id, email from users").encode()]);
    let description = columns(&["id", "email"]).encode();
    script.server(&[
        description.clone(),
        row(&["1", "alice@example.com"]),
        DataRow {
            values: vec![Some(Bytes::from_static(b"2")), None],
        }
        .encode(),
        CommandComplete::new("SELECT 2").encode(),
        idle(),
    ]);
    let mut expected = description.to_vec();
    expected.extend(concat(&[
        row(&["1", "***"]),
        DataRow {
            values: vec![Some(Bytes::from_static(b"2")), None],
        }
        .encode(),
        CommandComplete::new("SELECT 2").encode(),
        idle(),
    ]));
    assert_eq!(script.to_client, expected);
    let finished = script.events.iter().find_map(|e| match e {
        Event::StatementFinished(f) => Some(f.clone()),
        _ => None,
    });
    let finished = finished.unwrap();
    assert_eq!((finished.rows, finished.rewritten_rows), (2, 1));
}

#[test]
fn an_undescribed_portal_is_described_by_the_session_and_the_answer_swallowed() {
    let mut script = Script::ready(MaskEmail::default());
    script.client(&[
        parse("", "select email from users"),
        bind("", "", &[]),
        execute(""),
        Sync.encode(),
    ]);
    assert_eq!(
        script.to_server,
        concat(&[
            parse("", "select email from users"),
            bind("", "", &[]),
            describe_portal(""),
            execute(""),
            Sync.encode()
        ])
    );
    script.server(&[
        ParseComplete.encode(),
        BindComplete.encode(),
        columns(&["email"]).encode(),
        row(&["bob@example.com"]),
        CommandComplete::new("SELECT 1").encode(),
        idle(),
    ]);
    assert_eq!(
        script.to_client,
        concat(&[
            ParseComplete.encode(),
            BindComplete.encode(),
            row(&["***"]),
            CommandComplete::new("SELECT 1").encode(),
            idle()
        ]),
        "the client sees no RowDescription it did not ask for"
    );
    assert_eq!(script.session.hooks().seen_without_columns, 0);
}

#[test]
fn statement_descriptions_get_the_bind_result_formats() {
    let mut script = Script::ready(MaskEmail::default());
    script.client(&[
        parse("s", "select email, email from users"),
        Describe {
            target: Target::Statement,
            name: "s".into(),
        }
        .encode(),
        Sync.encode(),
    ]);
    script.server(&[
        ParseComplete.encode(),
        ParameterDescription::default().encode(),
        columns(&["email", "email"]).encode(),
        idle(),
    ]);
    // Second column in binary: a text mask must not touch it.
    let bind = Bind {
        statement: "s".into(),
        result_formats: vec![0, 1],
        ..Bind::default()
    };
    script.client(&[
        bind.encode(),
        describe_portal(""),
        execute(""),
        Sync.encode(),
    ]);
    script.take();
    let binary = Bytes::from_static(&[0, 1, 2]);
    let mut portal_columns = columns(&["email", "email"]);
    portal_columns.fields[1].format = 1;
    script.server(&[
        BindComplete.encode(),
        portal_columns.encode(),
        DataRow {
            values: vec![Some(Bytes::from_static(b"x@y.z")), Some(binary.clone())],
        }
        .encode(),
        CommandComplete::new("SELECT 1").encode(),
        idle(),
    ]);
    let expected_row = DataRow {
        values: vec![Some(Bytes::from_static(b"***")), Some(binary)],
    };
    assert!(
        script
            .to_client
            .windows(expected_row.encode().len())
            .any(|w| w == &expected_row.encode()[..])
    );
}
