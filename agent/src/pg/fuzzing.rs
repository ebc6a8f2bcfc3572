//! Fuzzing entry point for the agent's Postgres engine (`agent/fuzz`, run
//! with `cargo fuzz`), also run over a seeded corpus by the unit tests.
//!
//! The engine's parsing is `postern-l7-pg`'s (fuzzed there); what is the
//! agent's own is how the connection's policy takes part: guardrails on
//! hostile SQL, masking of hostile rows and descriptions, the identifier scan
//! behind fail-closed masking, and the audit trail built from the events.

use bytes::BytesMut;
use postern_l7_pg::Limits;
use postern_l7_pg::session::{Action, Event, Session, SessionOptions};
use postern_l7_sql::SqlPolicy;

use super::audit::AuditTrail;
use super::hooks::{SourceColumn, SqlHooks};

/// Policies the first input byte picks from.
const POLICIES: &[&str] = &[
    r#"{"masking": {"columns": [{"column": "users.email"}, {"column": "*ssn*", "style": "keep_last4"}], "detectors": ["email", "card_number", "phone", "us_ssn", "uk_nino", "fr_nir"]}}"#,
    r#"{"guardrails": {"read_only": true, "deny_tables": ["secrets", "*.audit"]}, "audit_parameters": true}"#,
    r#"{"guardrails": {"allow_unparsed": true, "allow_tables": ["public.*"]}, "masking": {"detectors": ["email"]}}"#,
    "{}",
];

/// Input: a policy byte, then chunks as in `postern_l7_pg::fuzzing::session`
/// (a header byte: high bit set for the server's side, low seven bits the
/// length). Feeds them to an established session with the policy's hooks,
/// as the relay does. Must never panic; returns the audit records made.
pub fn engine(data: &[u8]) -> usize {
    let Some((&pick, mut rest)) = data.split_first() else {
        return 0;
    };
    let policy: SqlPolicy = match serde_json::from_str(POLICIES[usize::from(pick) % POLICIES.len()])
    {
        Ok(policy) => policy,
        Err(_) => return 0,
    };
    let Ok(mut hooks) = SqlHooks::new(&policy) else {
        return 0;
    };
    // Every table column the rows may name is "known", so rules by source apply.
    for oid in 0..4u32 {
        for attnum in 0..4i16 {
            hooks.sources.insert(
                (16384 + oid, attnum),
                SourceColumn {
                    schema: "public".into(),
                    table: if oid % 2 == 0 { "users" } else { "people" }.into(),
                    column: ["email", "ssn", "name", "id"][attnum as usize].into(),
                },
            );
        }
    }
    let options = SessionOptions {
        limits: Limits {
            max_message_len: 64 * 1024,
        },
        record_parameters: policy.audit_parameters,
    };
    let mut session = Session::established(hooks, options);
    let mut trail = AuditTrail::default();
    let (mut from_client, mut from_server) = (BytesMut::new(), BytesMut::new());
    let mut records = 0;
    while let Some((&header, tail)) = rest.split_first() {
        let len = usize::from(header & 0x7f).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        rest = tail;
        let mut actions = Vec::new();
        let result = if header & 0x80 == 0 {
            from_client.extend_from_slice(chunk);
            session.on_client_bytes(&mut from_client, &mut actions)
        } else {
            from_server.extend_from_slice(chunk);
            session.on_server_bytes(&mut from_server, &mut actions)
        };
        for action in actions {
            if let Action::Event(event) = action {
                let hooks = session.hooks_mut();
                if let Event::StatementStarted(started) = &event {
                    hooks.statement_started(started.id, &started.sql);
                }
                if trail.on_event(event, |id| hooks.take_masked(id)).is_some() {
                    records += 1;
                }
            }
        }
        if result.is_err() {
            break;
        }
    }
    records + trail.unfinished("fuzz").len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_l7_pg::messages::*;

    fn chunked(server: bool, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in bytes.chunks(0x7f) {
            out.push(piece.len() as u8 | if server { 0x80 } else { 0 });
            out.extend_from_slice(piece);
        }
        out
    }

    fn row_description() -> Vec<u8> {
        let field = |name: &str, table_oid, attnum, type_oid, format| FieldDescription {
            name: name.into(),
            table_oid,
            column_attnum: attnum,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format,
        };
        RowDescription {
            fields: vec![
                field("e", 16384, 0, 25, 0),
                field("ssn", 16385, 1, 25, 1),
                field("x", 0, 0, 23, 1),
            ],
        }
        .encode()
        .to_vec()
    }

    /// A seeded corpus: real exchanges, then the same cut and corrupted.
    #[test]
    fn the_engine_survives_a_seeded_corpus() {
        let query = |sql: &str| Query { sql: sql.into() }.encode().to_vec();
        let row = DataRow {
            values: vec![
                Some(bytes::Bytes::from_static(
                    b"ann@example.com 4111111111111111",
                )),
                Some(bytes::Bytes::from_static(b"123-45-6789")),
                Some(bytes::Bytes::from_static(&[0, 0, 0, 1])),
            ],
        }
        .encode()
        .to_vec();
        let complete = [
            b'C', 0, 0, 0, 13, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', 0,
        ];
        let ready = [b'Z', 0, 0, 0, 5, b'I'];
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        for pick in 0..POLICIES.len() as u8 {
            for sql in [
                "select email, max(ssn) from users",
                "drop table users; select 1",
                "update users set email = 'x'",
                "select \"E\"\"mail\" from secrets",
                "copy users to stdout",
                "\u{ffff}(((( not sql",
            ] {
                let mut input = vec![pick];
                input.extend(chunked(false, &query(sql)));
                input.extend(chunked(true, &row_description()));
                input.extend(chunked(true, &row));
                input.extend(chunked(true, &complete));
                input.extend(chunked(true, &ready));
                seeds.push(input);
            }
        }
        let mut made = 0;
        for seed in &seeds {
            made += engine(seed);
            for cut in (0..seed.len()).step_by(7) {
                engine(&seed[..cut]);
                let mut corrupt = seed.clone();
                corrupt[cut] ^= 0x5a;
                engine(&corrupt);
            }
        }
        assert!(made >= seeds.len(), "whole exchanges are audited: {made}");
    }
}
