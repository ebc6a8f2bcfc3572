//! Entry points for fuzzing (`l7/pg/fuzz`, run with `cargo fuzz`), also run
//! over a seeded corpus by the unit tests so they cannot rot.

use bytes::{Bytes, BytesMut};

use crate::frame::{BackendDecoder, FrontendDecoder, Limits, Message};
use crate::messages::*;
use crate::session::{
    Action, AuditOnly, Event, Hooks, RowContext, Session, SessionOptions, Statement, Verdict,
};
use crate::{BackendMessage, FrontendMessage};

/// Small limits so the fuzzer reaches the length checks quickly.
const LIMITS: Limits = Limits {
    max_message_len: 64 * 1024,
};

/// Splits `data` into chunks (a header byte: the high bit says which side
/// sent it, the low seven bits how many bytes follow), then:
/// - decodes each side's bytes with its decoder and parses every message to
///   its typed form;
/// - feeds the chunks, interleaved as given, to an audit-only session, which
///   must forward exactly the bytes it consumed, each way;
/// - feeds them to a session with hooks that block and rewrite.
///
/// Must never panic. Returns how many events the audit-only session emitted.
pub fn session(data: &[u8]) -> usize {
    let chunks = split(data);
    for client in [true, false] {
        let stream: Vec<u8> = chunks
            .iter()
            .filter(|c| c.0 == client)
            .flat_map(|c| c.1.iter().copied())
            .collect();
        decode_all(&stream, client);
    }

    let mut audit = Session::new(
        AuditOnly,
        SessionOptions {
            limits: LIMITS,
            record_parameters: true,
        },
    );
    let events = run(&mut audit, &chunks, true);

    let mut hostile = Session::new(
        Hostile::default(),
        SessionOptions {
            limits: LIMITS,
            record_parameters: false,
        },
    );
    run(&mut hostile, &chunks, false);
    events
}

fn split(data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&header, tail)) = rest.split_first() {
        let len = usize::from(header & 0x7f).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        chunks.push((header & 0x80 == 0, chunk));
        rest = tail;
    }
    chunks
}

fn decode_all(stream: &[u8], client: bool) {
    let mut buf = BytesMut::from(stream);
    let mut frontend = FrontendDecoder::new(LIMITS);
    let mut backend = BackendDecoder::new(LIMITS);
    let mut consumed = Vec::new();
    loop {
        let decoded: Result<Option<Message>, _> = if client {
            frontend.decode(&mut buf)
        } else {
            backend.decode(&mut buf)
        };
        let Ok(Some(message)) = decoded else { break };
        consumed.extend_from_slice(message.raw());
        if client {
            if let Ok(typed) = FrontendMessage::parse(&message) {
                let _ = typed.encode();
            }
        } else if let Ok(typed) = BackendMessage::parse(&message) {
            let _ = typed.encode();
        }
    }
    assert!(
        stream.starts_with(&consumed),
        "messages are exactly the input bytes, in order"
    );
}

fn run<H: Hooks>(session: &mut Session<H>, chunks: &[(bool, &[u8])], faithful: bool) -> usize {
    let (mut from_client, mut from_server) = (BytesMut::new(), BytesMut::new());
    let (mut client_fed, mut server_fed) = (Vec::new(), Vec::new());
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut events = 0;
    for (client, chunk) in chunks {
        let mut actions = Vec::new();
        let result = if *client {
            client_fed.extend_from_slice(chunk);
            from_client.extend_from_slice(chunk);
            session.on_client_bytes(&mut from_client, &mut actions)
        } else {
            server_fed.extend_from_slice(chunk);
            from_server.extend_from_slice(chunk);
            session.on_server_bytes(&mut from_server, &mut actions)
        };
        for action in actions {
            match action {
                Action::ToServer(bytes) => to_server.extend_from_slice(&bytes),
                Action::ToClient(bytes) => to_client.extend_from_slice(&bytes),
                Action::Event(event) => {
                    if let Event::StatementStarted(_) = event {
                        events += 1;
                    }
                }
            }
        }
        // A real session ends at its first protocol error.
        if result.is_err() {
            return events;
        }
        if faithful {
            let consumed = client_fed.len() - from_client.len();
            assert_eq!(
                to_server,
                client_fed[..consumed],
                "client bytes forwarded unchanged"
            );
            let consumed = server_fed.len() - from_server.len();
            assert_eq!(
                to_client,
                server_fed[..consumed],
                "server bytes forwarded unchanged"
            );
        }
    }
    events
}

/// Blocks every other statement and rewrites every value of every row.
#[derive(Default)]
struct Hostile {
    checks: u64,
}

impl Hooks for Hostile {
    fn check(&mut self, _statement: &Statement<'_>) -> Verdict {
        self.checks += 1;
        if self.checks.is_multiple_of(2) {
            Verdict::Block {
                rule: "fuzz".into(),
                reason: "every other statement".into(),
            }
        } else {
            Verdict::Allow
        }
    }

    fn wants_rows(&self) -> bool {
        true
    }

    fn rewrite_row(&mut self, _row: RowContext<'_>, values: &mut [Option<Bytes>]) -> bool {
        for value in values.iter_mut() {
            *value = value.as_ref().map(|_| Bytes::from_static(b"xx"));
        }
        !values.is_empty()
    }
}

/// A seeded input: a plausible conversation (startup, login, simple and
/// extended queries, COPY, errors) cut into chunks, with a few corrupted bytes.
pub fn seeded_input(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut messages: Vec<(bool, Bytes)> = Vec::new();
    if next() % 4 == 0 {
        messages.push((true, SslRequest.encode()));
        messages.push((false, Bytes::from_static(b"N")));
    }
    messages.push((
        true,
        StartupMessage::new(vec![("user".into(), "fuzz".into())]).encode(),
    ));
    messages.push((false, Authentication::Ok.encode()));
    messages.push((false, ReadyForQuery::default().encode()));
    for _ in 0..(next() % 12) {
        let name = if next() % 2 == 0 { "" } else { "s1" };
        match next() % 6 {
            0 => {
                messages.push((true, Query::new("select 1").encode()));
                messages.push((false, text_row_description().encode()));
                messages.push((
                    false,
                    DataRow {
                        values: vec![Some(Bytes::from_static(b"1")), None],
                    }
                    .encode(),
                ));
                messages.push((false, CommandComplete::new("SELECT 1").encode()));
                messages.push((false, ReadyForQuery::default().encode()));
            }
            1 => {
                let parse = Parse {
                    name: name.into(),
                    sql: "select $1".into(),
                    param_types: vec![23],
                };
                let bind = Bind {
                    statement: name.into(),
                    params: vec![Some(Bytes::from_static(b"7"))],
                    ..Bind::default()
                };
                messages.push((true, parse.encode()));
                messages.push((true, bind.encode()));
                messages.push((
                    true,
                    Describe {
                        target: Target::Portal,
                        name: String::new(),
                    }
                    .encode(),
                ));
                messages.push((true, Execute::default().encode()));
                messages.push((true, Sync.encode()));
                messages.push((false, ParseComplete.encode()));
                messages.push((false, BindComplete.encode()));
                messages.push((false, text_row_description().encode()));
                messages.push((
                    false,
                    DataRow {
                        values: vec![Some(Bytes::from_static(b"7")), None],
                    }
                    .encode(),
                ));
                messages.push((false, CommandComplete::new("SELECT 1").encode()));
                messages.push((false, ReadyForQuery::default().encode()));
            }
            2 => {
                messages.push((true, Query::new("copy t from stdin").encode()));
                messages.push((false, CopyInResponse::default().encode()));
                messages.push((
                    true,
                    CopyData {
                        data: Bytes::from_static(b"1\n"),
                    }
                    .encode(),
                ));
                messages.push((true, CopyDone.encode()));
                messages.push((false, CommandComplete::new("COPY 1").encode()));
                messages.push((false, ReadyForQuery::default().encode()));
            }
            3 => {
                messages.push((
                    true,
                    Bind {
                        statement: name.into(),
                        ..Bind::default()
                    }
                    .encode(),
                ));
                messages.push((
                    true,
                    Execute {
                        portal: String::new(),
                        max_rows: 1,
                    }
                    .encode(),
                ));
                messages.push((true, Sync.encode()));
                messages.push((
                    false,
                    ErrorResponse::new("ERROR", "26000", "no such statement").encode(),
                ));
                messages.push((false, ReadyForQuery::default().encode()));
            }
            4 => {
                messages.push((true, Query::new("copy t to stdout").encode()));
                messages.push((false, CopyOutResponse::default().encode()));
                messages.push((
                    false,
                    CopyData {
                        data: Bytes::from_static(b"1\n"),
                    }
                    .encode(),
                ));
                messages.push((false, CopyDone.encode()));
                messages.push((false, CommandComplete::new("COPY 1").encode()));
                messages.push((false, ReadyForQuery::default().encode()));
            }
            _ => {
                messages.push((false, NoticeResponse::default().encode()));
                messages.push((
                    true,
                    FunctionCall {
                        function_oid: 1,
                        arg_formats: vec![],
                        args: vec![None],
                        result_format: 0,
                    }
                    .encode(),
                ));
                messages.push((false, FunctionCallResponse { result: None }.encode()));
                messages.push((false, ReadyForQuery::default().encode()));
            }
        }
    }
    if next() % 2 == 0 {
        messages.push((true, Terminate.encode()));
    }
    let mut input = Vec::new();
    for (client, message) in messages {
        let mut bytes = message.to_vec();
        if next() % 40 == 0 && !bytes.is_empty() {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        for chunk in bytes.chunks(1 + (next() % 127) as usize) {
            input.push(chunk.len() as u8 | if client { 0 } else { 0x80 });
            input.extend_from_slice(chunk);
        }
    }
    input
}

fn text_row_description() -> RowDescription {
    let field = |name: &str| FieldDescription {
        name: name.into(),
        table_oid: 0,
        column_attnum: 0,
        type_oid: 25,
        type_size: -1,
        type_modifier: -1,
        format: 0,
    };
    RowDescription {
        fields: vec![field("a"), field("b")],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sessions_survive_a_seeded_corpus() {
        let statements: usize = (0..3000)
            .map(|seed| super::session(&super::seeded_input(seed)))
            .sum();
        assert!(
            statements > 5_000,
            "the corpus must reach statements, saw {statements}"
        );
        assert_eq!(super::session(&[]), 0);
        assert_eq!(super::session(&[0x7f; 300]), 0);
        assert_eq!(super::session(&[0xff; 300]), 0);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x1234_5678_9abc_def1u64;
        for _ in 0..2000 {
            let len = (state % 400) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            super::session(&input);
        }
    }
}
