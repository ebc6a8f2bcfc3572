//! Scripted conversations: what the client sends, what the server answers,
//! and what the session forwards, answers and reports.

mod blocking;
mod pipeline;
mod rows;
mod startup;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::messages::*;

/// Drives a session with encoded messages and keeps everything it returned.
pub(super) struct Script<H: Hooks> {
    pub session: Session<H>,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    pub events: Vec<Event>,
}

impl<H: Hooks> Script<H> {
    pub fn new(hooks: H) -> Self {
        Self {
            session: Session::new(hooks, SessionOptions::default()),
            to_server: Vec::new(),
            to_client: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A session past startup and authentication (trust).
    pub fn ready(hooks: H) -> Self {
        let mut script = Self::new(hooks);
        script.client(&[StartupMessage::new(vec![("user".into(), "alice".into())]).encode()]);
        script.server(&[
            Authentication::Ok.encode(),
            ReadyForQuery::default().encode(),
        ]);
        assert_eq!(script.session.phase(), Phase::Ready);
        script.take();
        script
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToServer(bytes) => self.to_server.extend_from_slice(&bytes),
                Action::ToClient(bytes) => self.to_client.extend_from_slice(&bytes),
                Action::Event(event) => self.events.push(event),
            }
        }
    }

    pub fn client(&mut self, messages: &[Bytes]) {
        let mut buf = BytesMut::from(&messages.concat()[..]);
        let mut actions = Vec::new();
        self.session
            .on_client_bytes(&mut buf, &mut actions)
            .expect("client bytes");
        assert!(buf.is_empty());
        self.apply(actions);
    }

    pub fn server(&mut self, messages: &[Bytes]) {
        let mut buf = BytesMut::from(&messages.concat()[..]);
        let mut actions = Vec::new();
        self.session
            .on_server_bytes(&mut buf, &mut actions)
            .expect("server bytes");
        assert!(buf.is_empty());
        self.apply(actions);
    }

    /// Takes what was forwarded and reported so far.
    pub fn take(&mut self) -> (Vec<u8>, Vec<u8>, Vec<Event>) {
        (
            std::mem::take(&mut self.to_server),
            std::mem::take(&mut self.to_client),
            std::mem::take(&mut self.events),
        )
    }

    pub fn statements(&self) -> Vec<(&str, Protocol)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StatementStarted(s) => Some((&*s.sql, s.protocol)),
                _ => None,
            })
            .collect()
    }

    pub fn finished(&self) -> Vec<(u64, Outcome, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StatementFinished(f) => Some((f.id, f.outcome.clone(), f.rows)),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn concat(messages: &[Bytes]) -> Vec<u8> {
    messages.concat()
}

pub(super) fn row(values: &[&str]) -> Bytes {
    DataRow {
        values: values
            .iter()
            .map(|v| Some(Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
    }
    .encode()
}

pub(super) fn ready(status: TransactionStatus) -> Bytes {
    ReadyForQuery { status }.encode()
}

pub(super) fn idle() -> Bytes {
    ready(TransactionStatus::Idle)
}

pub(super) fn parse(name: &str, sql: &str) -> Bytes {
    Parse {
        name: name.into(),
        sql: sql.into(),
        param_types: vec![],
    }
    .encode()
}

pub(super) fn bind(portal: &str, statement: &str, params: &[&str]) -> Bytes {
    Bind {
        portal: portal.into(),
        statement: statement.into(),
        param_formats: vec![],
        params: params
            .iter()
            .map(|p| Some(Bytes::copy_from_slice(p.as_bytes())))
            .collect(),
        result_formats: vec![],
    }
    .encode()
}

pub(super) fn execute(portal: &str) -> Bytes {
    Execute {
        portal: portal.into(),
        max_rows: 0,
    }
    .encode()
}

pub(super) fn describe_portal(name: &str) -> Bytes {
    Describe {
        target: Target::Portal,
        name: name.into(),
    }
    .encode()
}

pub(super) fn error(code: &str) -> Bytes {
    ErrorResponse::new("ERROR", code, "boom").encode()
}
