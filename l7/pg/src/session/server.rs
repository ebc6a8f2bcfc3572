//! Messages from the server.

use std::sync::Arc;

use crate::error::{ProtocolError, Tag};
use crate::frame::Message;
use crate::messages::{
    Authentication, BackendKeyData, CommandComplete, DataRow, ErrorResponse, ReadyForQuery,
    RowDescription, TransactionStatus, WireMessage,
};

use super::state::{Pending, Run};
use super::{
    Action, Copy, Event, Hooks, Outcome, PasswordKind, RowContext, Session, Stage,
    StatementFinished,
};

impl<H: Hooks> Session<H> {
    pub(super) fn server_message_into(
        &mut self,
        message: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        let tag = message.tag();
        if tag == Tag::EncryptionResponse {
            let accepted = message.raw()[..] != *b"N";
            self.stage = if accepted {
                Stage::Encrypted
            } else {
                Stage::Startup
            };
            out.push(Action::Event(Event::EncryptionAnswered { accepted }));
            out.push(Action::ToClient(message.into_raw()));
            return Ok(());
        }
        let Tag::Byte(byte) = tag else {
            return Err(ProtocolError::UnexpectedMessage {
                expected: "a typed message",
                tag,
            });
        };
        let forward = match byte {
            b'R' => self.authentication(&message, out)?,
            b'K' => {
                let key: BackendKeyData = message.parse()?;
                out.push(Action::Event(Event::BackendKey {
                    process_id: key.process_id,
                    secret_key: key.secret_key,
                }));
                true
            }
            b'E' => self.error(&message, out)?,
            b'Z' => {
                out.push(Action::ToClient(message.raw().clone()));
                self.ready_for_query(&message, out)?;
                return Ok(());
            }
            b'T' => self.row_description(&message)?,
            b'n' => self.no_data(),
            b'1' | b'2' | b'3' => {
                self.pop_if(|p| match byte {
                    b'1' => matches!(p, Pending::Parse { .. }),
                    b'2' => matches!(p, Pending::Bind { .. }),
                    _ => matches!(p, Pending::Close),
                });
                true
            }
            b'D' => return self.data_row(message, out),
            b'C' => {
                let complete: CommandComplete = message.parse()?;
                self.command_complete(complete, out);
                true
            }
            b'I' => {
                if let Some(Pending::Execute(_)) = self.pending.front()
                    && let Some(Pending::Execute(run)) = self.pending.pop_front()
                {
                    out.push(finished(run, Outcome::Ok));
                }
                true
            }
            b's' => {
                if let Some(Pending::Execute(_)) = self.pending.front()
                    && let Some(Pending::Execute(run)) = self.pending.pop_front()
                {
                    out.push(finished(run, Outcome::Suspended));
                }
                true
            }
            b'G' => self.enter_copy(Copy::In),
            b'H' => self.enter_copy(Copy::Out),
            b'W' => self.enter_copy(Copy::Both),
            b'c' => {
                self.copy = match self.copy {
                    Some(Copy::Both) => Some(Copy::In),
                    _ => None,
                };
                true
            }
            // ParameterStatus, NoticeResponse, NotificationResponse (any
            // time), ParameterDescription, CopyData, FunctionCallResponse,
            // NegotiateProtocolVersion.
            _ => true,
        };
        if forward {
            out.push(Action::ToClient(message.into_raw()));
        }
        self.release_local_answers(out);
        Ok(())
    }

    fn authentication(
        &mut self,
        message: &Message,
        out: &mut Vec<Action>,
    ) -> Result<bool, ProtocolError> {
        let request: Authentication = message.parse()?;
        self.password_kind = match request {
            Authentication::Ok => {
                out.push(Action::Event(Event::Authenticated));
                None
            }
            Authentication::CleartextPassword | Authentication::Md5Password { .. } => {
                Some(PasswordKind::Password)
            }
            Authentication::Sasl { .. } => Some(PasswordKind::SaslInitialResponse),
            Authentication::SaslContinue { .. } => Some(PasswordKind::SaslResponse),
            Authentication::Gss | Authentication::Sspi | Authentication::GssContinue { .. } => {
                Some(PasswordKind::GssResponse)
            }
            Authentication::SaslFinal { .. } | Authentication::KerberosV5 => None,
        };
        Ok(true)
    }

    fn error(&mut self, message: &Message, out: &mut Vec<Action>) -> Result<bool, ProtocolError> {
        let error: ErrorResponse = message.parse()?;
        let code = error.code().unwrap_or("").to_string();
        let text = error.message().unwrap_or("").to_string();
        if matches!(error.severity(), Some("FATAL" | "PANIC")) {
            self.stage = Stage::Terminated;
        }
        self.copy = None;
        match self.pending.front_mut() {
            Some(Pending::Query(run)) => {
                run.error = Some((code, text));
                return Ok(true);
            }
            Some(Pending::Sync) | Some(Pending::Blocked { .. }) | None => {
                out.push(Action::Event(Event::ServerError {
                    code,
                    message: text,
                }));
                return Ok(true);
            }
            Some(_) => {}
        }
        // An extended-protocol request failed: the server now skips
        // everything up to Sync, and so do we.
        if let Some(failed) = self.pending.pop_front() {
            match failed {
                Pending::Parse { statement } => self.statements.remove_id(statement),
                Pending::Bind { portal } => self.portals.remove_id(portal),
                Pending::Execute(run) => out.push(finished(
                    run,
                    Outcome::Error {
                        code: code.clone(),
                        message: text.clone(),
                    },
                )),
                _ => {}
            }
        }
        while let Some(next) = self.pending.front() {
            if matches!(next, Pending::Sync) {
                break;
            }
            match self.pending.pop_front() {
                // A Query before the Sync is skipped as well.
                Some(Pending::Query(run)) => out.push(finished(run, Outcome::Skipped)),
                Some(Pending::Parse { statement }) => self.statements.remove_id(statement),
                Some(Pending::Bind { portal }) => self.portals.remove_id(portal),
                Some(Pending::Execute(run)) => out.push(finished(run, Outcome::Skipped)),
                // The server skipped it too: no second error for the client.
                Some(Pending::Blocked {
                    id, rule, reason, ..
                }) => out.push(finished_blocked(id, rule, reason)),
                _ => {}
            }
        }
        Ok(true)
    }

    fn ready_for_query(
        &mut self,
        message: &Message,
        out: &mut Vec<Action>,
    ) -> Result<(), ProtocolError> {
        let ready: ReadyForQuery = message.parse()?;
        self.status = ready.status;
        self.copy = None;
        if self.stage == Stage::Authentication {
            self.stage = Stage::Established;
            out.push(Action::Event(Event::Ready));
        }
        // Everything before the Sync or Query this answers is over.
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                Pending::Sync => break,
                Pending::Query(run) => {
                    let outcome = match run.error.clone() {
                        Some((code, message)) => Outcome::Error { code, message },
                        None => Outcome::Ok,
                    };
                    out.push(finished(run, outcome));
                    break;
                }
                Pending::Execute(run) => out.push(finished(run, Outcome::Skipped)),
                Pending::Blocked {
                    id, rule, reason, ..
                } => out.push(finished_blocked(id, rule, reason)),
                _ => {}
            }
        }
        // Portals live until the end of the transaction.
        if ready.status == TransactionStatus::Idle {
            self.portals.clear();
        }
        self.release_local_answers(out);
        Ok(())
    }

    fn row_description(&mut self, message: &Message) -> Result<bool, ProtocolError> {
        let wants_rows = self.hooks.wants_rows();
        let parse = || message.parse::<RowDescription>().map(Arc::new);
        match self.pending.front_mut() {
            Some(Pending::Query(run)) | Some(Pending::Execute(run)) => {
                if wants_rows {
                    run.columns = Some(parse()?);
                }
                Ok(true)
            }
            Some(Pending::DescribeStatement { statement }) => {
                if wants_rows
                    && let Some(statement) = statement.and_then(|id| self.statements.get_mut(id))
                {
                    statement.columns = Some(parse()?);
                }
                self.pending.pop_front();
                Ok(true)
            }
            Some(Pending::DescribePortal { portal, injected }) => {
                let injected = *injected;
                if wants_rows && let Some(portal) = portal.and_then(|id| self.portals.get_mut(id)) {
                    portal.columns = Some(parse()?);
                }
                self.pending.pop_front();
                Ok(!injected)
            }
            _ => Ok(true),
        }
    }

    fn no_data(&mut self) -> bool {
        match self.pending.front() {
            Some(Pending::DescribeStatement { .. }) => {
                self.pending.pop_front();
                true
            }
            Some(Pending::DescribePortal { injected, .. }) => {
                let forward = !*injected;
                self.pending.pop_front();
                forward
            }
            _ => true,
        }
    }

    fn pop_if(&mut self, expected: impl Fn(&Pending) -> bool) {
        if self.pending.front().is_some_and(expected) {
            self.pending.pop_front();
        }
    }

    fn enter_copy(&mut self, copy: Copy) -> bool {
        self.copy = Some(copy);
        // A Sync pipelined right behind an Execute that starts COPY IN was
        // read, and ignored, by the server in copy mode: it gets no answer
        // (libpq sends another after CopyDone).
        if copy != Copy::Out
            && matches!(self.pending.front(), Some(Pending::Execute(_)))
            && matches!(self.pending.get(1), Some(Pending::Sync))
        {
            self.pending.remove(1);
        }
        true
    }

    fn command_complete(&mut self, complete: CommandComplete, out: &mut Vec<Action>) {
        let rows = complete.rows();
        match self.pending.front_mut() {
            Some(Pending::Query(run)) => {
                run.command_complete(complete.tag, rows);
                run.columns = None;
            }
            Some(Pending::Execute(run)) => {
                run.command_complete(complete.tag, rows);
                if let Some(Pending::Execute(run)) = self.pending.pop_front() {
                    out.push(finished(run, Outcome::Ok));
                }
            }
            _ => {}
        }
        self.copy = None;
    }

    fn data_row(&mut self, message: Message, out: &mut Vec<Action>) -> Result<(), ProtocolError> {
        let wants_rows = self.hooks.wants_rows();
        let run = match self.pending.front_mut() {
            Some(Pending::Query(run)) | Some(Pending::Execute(run)) => run,
            _ => {
                out.push(Action::ToClient(message.into_raw()));
                return Ok(());
            }
        };
        run.data_rows += 1;
        if !wants_rows {
            out.push(Action::ToClient(message.into_raw()));
            return Ok(());
        }
        if run.columns.is_none()
            && let Some(portal) = run.portal.and_then(|id| self.portals.get_mut(id))
        {
            // Described portal, else the statement's description with the
            // Bind's result formats.
            if portal.columns.is_none() {
                let statement = portal.statement.and_then(|id| self.statements.get(id));
                portal.columns = statement
                    .and_then(|s| s.columns.as_ref())
                    .map(|c| Arc::new(c.with_result_formats(&portal.result_formats)));
            }
            run.columns = portal.columns.clone();
        }
        let mut row: DataRow = message.parse()?;
        let context = RowContext {
            statement_id: run.id,
            columns: run.columns.as_deref(),
        };
        if self.hooks.rewrite_row(context, &mut row.values) {
            run.rewritten_rows += 1;
            out.push(Action::ToClient(row.encode()));
        } else {
            out.push(Action::ToClient(message.into_raw()));
        }
        Ok(())
    }
}

fn finished(run: Run, outcome: Outcome) -> Action {
    Action::Event(Event::StatementFinished(StatementFinished {
        id: run.id,
        outcome,
        rows: run.rows + run.data_rows,
        tags: run.tags,
        rewritten_rows: run.rewritten_rows,
    }))
}

pub(super) fn finished_blocked(id: u64, rule: String, reason: String) -> Action {
    Action::Event(Event::StatementFinished(StatementFinished {
        id,
        outcome: Outcome::Blocked { rule, reason },
        rows: 0,
        tags: Vec::new(),
        rewritten_rows: 0,
    }))
}
