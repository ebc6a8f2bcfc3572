//! Messages from the client.

use std::sync::Arc;

use crate::error::{ProtocolError, Tag};
use crate::frame::Message;
use crate::messages::{
    Bind, CancelRequest, Close, Describe, ErrorResponse, Execute, FunctionCall, Parse, Query,
    ReadyForQuery, StartupMessage, Target, WireMessage,
};

use super::state::{Pending, Portal, PreparedStatement, Run};
use super::{
    Action, Copy, Event, Hooks, Protocol, Session, Stage, Statement, StatementStarted, Verdict,
};

impl<H: Hooks> Session<H> {
    pub(super) fn client_message_into(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        match self.stage {
            Stage::Startup => self.client_startup(message, out),
            Stage::EncryptionNegotiation => Err(ProtocolError::UnexpectedMessage {
                expected: "nothing until the server answers the encryption request",
                tag: message.tag(),
            }),
            Stage::Encrypted => {
                out.push(Action::ToServer(message.into_raw()));
                Ok(())
            }
            Stage::Authentication => match message.tag() {
                Tag::Byte(b'p') => {
                    out.push(Action::ToServer(message.into_raw()));
                    Ok(())
                }
                Tag::Byte(b'X') => self.terminate(message, out),
                tag => Err(ProtocolError::UnexpectedMessage {
                    expected: "an authentication response",
                    tag,
                }),
            },
            Stage::Established => self.client_established(message, out),
            Stage::Terminated => Err(ProtocolError::DataAfterEnd {
                direction: crate::Direction::Frontend,
            }),
        }
    }

    fn client_startup(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        match message.tag() {
            tag @ (Tag::SslRequest | Tag::GssEncRequest) => {
                self.stage = Stage::EncryptionNegotiation;
                self.backend.expect_encryption_response();
                out.push(Action::Event(Event::EncryptionRequested {
                    gss: tag == Tag::GssEncRequest,
                }));
            }
            Tag::Startup => {
                let startup: StartupMessage = message.parse()?;
                self.stage = Stage::Authentication;
                out.push(Action::Event(Event::Startup {
                    parameters: startup.parameters,
                }));
            }
            Tag::CancelRequest => {
                let cancel: CancelRequest = message.parse()?;
                self.stage = Stage::Terminated;
                out.push(Action::Event(Event::CancelRequest {
                    process_id: cancel.process_id,
                    secret_key: cancel.secret_key,
                }));
            }
            tag => {
                return Err(ProtocolError::UnexpectedMessage {
                    expected: "a startup message",
                    tag,
                });
            }
        }
        out.push(Action::ToServer(message.into_raw()));
        Ok(())
    }

    fn terminate(&mut self, message: Message, out: &mut Vec<Action>) -> Result<(), ProtocolError> {
        self.stage = Stage::Terminated;
        out.push(Action::ToServer(message.into_raw()));
        out.push(Action::Event(Event::Terminated));
        Ok(())
    }

    fn client_established(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        let Tag::Byte(byte) = message.tag() else {
            return Err(ProtocolError::UnexpectedMessage {
                expected: "a typed message",
                tag: message.tag(),
            });
        };
        if self.discarding {
            match byte {
                b'S' => self.discarding = false,
                b'X' => return self.terminate(message, out),
                // Dropped, as the server drops everything up to Sync after an error.
                _ => return Ok(()),
            }
        }
        match byte {
            b'Q' => return self.query(message, out),
            b'P' => return self.parse(message, out),
            b'B' => self.bind(&message)?,
            b'D' => self.describe(&message)?,
            b'E' => return self.execute(message, out),
            b'C' => {
                let close: Close = message.parse()?;
                match close.target {
                    Target::Statement => self.statements.remove(&close.name),
                    Target::Portal => self.portals.remove(&close.name),
                }
                self.pending.push_back(Pending::Close);
            }
            // The server ignores Sync and Flush during COPY IN.
            b'S' if matches!(self.copy, Some(Copy::In | Copy::Both)) => {}
            b'S' => self.pending.push_back(Pending::Sync),
            b'F' => return self.function_call(message, out),
            b'X' => return self.terminate(message, out),
            b'c' | b'f' if self.copy == Some(Copy::In) => self.copy = None,
            b'c' if self.copy == Some(Copy::Both) => self.copy = Some(Copy::Out),
            // Flush, CopyData, and COPY messages outside COPY (the server
            // ignores or refuses them itself).
            b'H' | b'd' | b'c' | b'f' => {}
            _ => {
                return Err(ProtocolError::UnexpectedMessage {
                    expected: "a query-phase message",
                    tag: message.tag(),
                });
            }
        }
        out.push(Action::ToServer(message.into_raw()));
        Ok(())
    }

    fn query(&mut self, message: Message, out: &mut Vec<Action>) -> Result<(), ProtocolError> {
        let query: Query = message.parse()?;
        // A simple Query destroys the unnamed statement and portal.
        self.statements.remove("");
        self.portals.remove("");
        let verdict = self.hooks.check(&Statement::Query { sql: &query.sql });
        let id = self.next_id();
        out.push(started(
            id,
            Protocol::Simple,
            query.sql.into(),
            None,
            None,
            0,
            None,
        ));
        match verdict {
            Verdict::Allow => {
                self.pending
                    .push_back(Pending::Query(super::state::Run::new(id, None)));
                out.push(Action::ToServer(message.into_raw()));
            }
            Verdict::Block { rule, reason } => self.block(id, rule, reason, true, out),
        }
        Ok(())
    }

    fn function_call(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        let call: FunctionCall = message.parse()?;
        let verdict = self.hooks.check(&Statement::FunctionCall {
            function_oid: call.function_oid,
            arg_count: call.args.len(),
        });
        let id = self.next_id();
        let sql: Arc<str> = format!("<function call {}>", call.function_oid).into();
        let parameters = self.options.record_parameters.then(|| call.args.clone());
        out.push(started(
            id,
            Protocol::FunctionCall,
            sql,
            None,
            None,
            call.args.len(),
            parameters,
        ));
        match verdict {
            Verdict::Allow => {
                self.pending.push_back(Pending::Query(Run::new(id, None)));
                out.push(Action::ToServer(message.into_raw()));
            }
            Verdict::Block { rule, reason } => self.block(id, rule, reason, true, out),
        }
        Ok(())
    }

    fn parse(&mut self, message: Message, out: &mut Vec<Action>) -> Result<(), ProtocolError> {
        let parse: Parse = message.parse()?;
        let verdict = self.hooks.check(&Statement::Parse {
            name: &parse.name,
            sql: &parse.sql,
            param_types: &parse.param_types,
        });
        if let Verdict::Block { rule, reason } = verdict {
            let id = self.next_id();
            let sql = parse.sql.into();
            let count = parse.param_types.len();
            out.push(started(
                id,
                Protocol::Extended,
                sql,
                Some(parse.name),
                None,
                count,
                None,
            ));
            self.discarding = true;
            self.block(id, rule, reason, false, out);
            return Ok(());
        }
        let id = self.next_id();
        let statement = PreparedStatement {
            sql: parse.sql.into(),
            columns: None,
        };
        self.statements.create(id, &parse.name, statement);
        self.pending.push_back(Pending::Parse { statement: id });
        out.push(Action::ToServer(message.into_raw()));
        Ok(())
    }

    fn bind(&mut self, message: &Message) -> Result<(), ProtocolError> {
        let bind: Bind = message.parse()?;
        let id = self.next_id();
        let statement = self.statements.id(&bind.statement);
        let sql = statement
            .and_then(|s| self.statements.get(s))
            .map(|s| s.sql.clone())
            // The server will refuse the Bind; nothing can run from it.
            .unwrap_or_else(|| "<unknown prepared statement>".into());
        let portal = Portal {
            statement_name: bind.statement,
            statement,
            sql,
            parameter_count: bind.params.len(),
            parameters: self.options.record_parameters.then_some(bind.params),
            result_formats: bind.result_formats,
            columns: None,
            described: false,
        };
        self.portals.create(id, &bind.portal, portal);
        self.pending.push_back(Pending::Bind { portal: id });
        Ok(())
    }

    fn describe(&mut self, message: &Message) -> Result<(), ProtocolError> {
        let describe: Describe = message.parse()?;
        let pending = match describe.target {
            Target::Statement => Pending::DescribeStatement {
                statement: self.statements.id(&describe.name),
            },
            Target::Portal => {
                let portal = self.portals.id(&describe.name);
                if let Some(portal) = portal.and_then(|id| self.portals.get_mut(id)) {
                    portal.described = true;
                }
                Pending::DescribePortal {
                    portal,
                    injected: false,
                }
            }
        };
        self.pending.push_back(pending);
        Ok(())
    }

    fn execute(&mut self, message: Message, out: &mut Vec<Action>) -> Result<(), ProtocolError> {
        let execute: Execute = message.parse()?;
        let id = self.next_id();
        let portal_id = self.portals.id(&execute.portal);
        let wants_rows = self.hooks.wants_rows();
        let record = match portal_id.and_then(|p| self.portals.get_mut(p)) {
            Some(portal) => {
                // Rows must be matched to their columns for the row hook: ask
                // the server to describe a portal the client did not describe.
                let inject = wants_rows && !portal.described;
                portal.described |= inject;
                let event = started(
                    id,
                    Protocol::Extended,
                    portal.sql.clone(),
                    Some(portal.statement_name.clone()),
                    Some(execute.portal.clone()),
                    portal.parameter_count,
                    portal.parameters.clone(),
                );
                (event, inject)
            }
            None => {
                let sql = "<unknown portal>".into();
                let event = started(
                    id,
                    Protocol::Extended,
                    sql,
                    None,
                    Some(execute.portal.clone()),
                    0,
                    None,
                );
                (event, false)
            }
        };
        let (event, inject) = record;
        out.push(event);
        if inject {
            let describe = Describe {
                target: Target::Portal,
                name: execute.portal,
            };
            out.push(Action::ToServer(describe.encode()));
            self.pending.push_back(Pending::DescribePortal {
                portal: portal_id,
                injected: true,
            });
        }
        self.pending
            .push_back(Pending::Execute(Run::new(id, portal_id)));
        out.push(Action::ToServer(message.into_raw()));
        Ok(())
    }

    /// Queues the local answer to a blocked statement and gives it at once if
    /// nothing is in flight before it.
    fn block(&mut self, id: u64, rule: String, reason: String, ready: bool, out: &mut Vec<Action>) {
        let error = ErrorResponse::blocked(&rule, &reason);
        self.pending.push_back(Pending::Blocked {
            id,
            error,
            rule,
            reason,
            ready,
        });
        self.release_local_answers(out);
    }

    /// Gives the local answers at the front of the queue: their turn has come.
    pub(super) fn release_local_answers(&mut self, out: &mut Vec<Action>) {
        while let Some(Pending::Blocked { .. }) = self.pending.front() {
            let Some(Pending::Blocked {
                id,
                error,
                rule,
                reason,
                ready,
            }) = self.pending.pop_front()
            else {
                break;
            };
            out.push(Action::ToClient(error.encode()));
            if ready {
                let ready = ReadyForQuery {
                    status: self.status,
                };
                out.push(Action::ToClient(ready.encode()));
            }
            out.push(super::server::finished_blocked(id, rule, reason));
        }
    }
}

fn started(
    id: u64,
    protocol: Protocol,
    sql: Arc<str>,
    statement_name: Option<String>,
    portal: Option<String>,
    parameter_count: usize,
    parameters: Option<Vec<Option<bytes::Bytes>>>,
) -> Action {
    Action::Event(Event::StatementStarted(StatementStarted {
        id,
        protocol,
        sql,
        statement_name,
        portal,
        parameter_count,
        parameters,
    }))
}
