//! The pump between the person's data stream and the database: every byte
//! goes through the session state machine, which decides what is forwarded,
//! answered locally, rewritten or audited.
//!
//! One task drives both directions. Reading a side pauses while what it
//! feeds is backed up (so a slow reader stalls its sender, never memory),
//! and writes never wait on reads, so neither side can deadlock the other.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures::Stream;
use postern_l7_pg::messages::{ErrorResponse, RowDescription, WireMessage};
use postern_l7_pg::session::{Action, Session};
use postern_l7_pg::{BackendDecoder, Limits, ProtocolError};
use postern_tunnel::FrameStream;
use postern_tunnel::proto::{Frame, StatementAudit, frame::Kind};
use tokio::io::AsyncWrite;

use super::audit::{self, AuditTrail};
use super::catalog::CatalogError;
use super::dial::DbStream;
use super::hooks::SqlHooks;

/// A side stops being read while this much waits to be written to the other
/// (or, for the client, back to itself).
const BACKLOG_LIMIT: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Messages bound the same way are written together, up to this much: one
/// frame (and one TLS record per hop) per answer, not one per message.
const COALESCE: usize = 64 * 1024;

/// Opens the catalog connection on first use (see `catalog`).
pub trait CatalogSource {
    fn look_up<'a>(
        &'a mut self,
        oids: &'a [u32],
        hooks: &'a mut SqlHooks,
    ) -> futures::future::BoxFuture<'a, Result<(), CatalogError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{side} sent a bad message: {error}")]
    Protocol {
        side: &'static str,
        error: ProtocolError,
    },
    #[error("masking needs the catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

enum ToClient {
    Data(BytesMut),
    Audit(StatementAudit),
}

enum Step {
    Progress,
    ClientBytes,
    ServerBytes,
    ClientEnded,
    ServerEnded,
}

pub struct Pump<'a, I, C> {
    client: &'a mut FrameStream<I>,
    server: DbStream,
    session: Session<SqlHooks>,
    catalog: C,
    trail: AuditTrail,
    backend: BackendDecoder,
    client_buf: BytesMut,
    server_buf: BytesMut,
    to_server: VecDeque<BytesMut>,
    to_server_len: usize,
    to_client: VecDeque<ToClient>,
    to_client_len: usize,
    client_ended: bool,
    server_ended: bool,
    server_shut: bool,
    /// Written to the database since the last flush.
    server_unflushed: bool,
    /// Set when a write to the client made progress.
    to_client_moved: bool,
    actions: Vec<Action>,
}

impl<'a, I, C> Pump<'a, I, C>
where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
    C: CatalogSource,
{
    pub fn new(
        client: &'a mut FrameStream<I>,
        server: DbStream,
        session: Session<SqlHooks>,
        catalog: C,
        limits: Limits,
    ) -> Self {
        Self {
            client,
            server,
            session,
            catalog,
            trail: AuditTrail::default(),
            backend: BackendDecoder::new(limits),
            client_buf: BytesMut::new(),
            server_buf: BytesMut::new(),
            to_server: VecDeque::new(),
            to_server_len: 0,
            to_client: VecDeque::new(),
            to_client_len: 0,
            client_ended: false,
            server_ended: false,
            server_shut: false,
            server_unflushed: false,
            to_client_moved: false,
            actions: Vec::new(),
        }
    }

    /// Bytes the client sent before the session started (after its startup).
    pub fn with_client_bytes(mut self, bytes: BytesMut) -> Self {
        self.client_buf = bytes;
        self
    }

    /// Runs until both sides are done. On a bad message from either side the
    /// client gets a FATAL ErrorResponse (after everything due before it) and
    /// the audit trail says why, then the error is returned.
    pub async fn run(mut self) -> Result<(), RelayError> {
        let result = self.pump().await;
        let reason = match &result {
            Ok(()) => "the session ended before the statement completed".to_owned(),
            Err(e) => format!("the session ended: {e}"),
        };
        for unfinished in self.trail.unfinished(&reason) {
            self.to_client.push_back(ToClient::Audit(unfinished));
        }
        if let Err(RelayError::Protocol { side, error }) = &result {
            let fatal = ErrorResponse::protocol_violation(error).encode();
            self.to_client_len += fatal.len();
            self.to_client
                .push_back(ToClient::Data(BytesMut::from(&fatal[..])));
            self.to_client
                .push_back(ToClient::Audit(audit::protocol_error(
                    side,
                    &error.to_string(),
                )));
        }
        // What is due to the client still reaches it, if it is there to read.
        let flush = poll_fn(|cx| self.poll_flush_client(cx));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), flush).await;
        result
    }

    async fn pump(&mut self) -> Result<(), RelayError> {
        if !self.client_buf.is_empty() {
            self.feed_client()?;
        }
        loop {
            if self.server_ended && self.to_client.is_empty() {
                return Ok(());
            }
            match poll_fn(|cx| self.poll_step(cx)).await? {
                Step::Progress => {}
                Step::ClientBytes => self.feed_client()?,
                Step::ServerBytes => self.feed_server().await?,
                Step::ClientEnded => self.client_ended = true,
                Step::ServerEnded => self.server_ended = true,
            }
        }
    }

    fn feed_client(&mut self) -> Result<(), RelayError> {
        let result = self
            .session
            .on_client_bytes(&mut self.client_buf, &mut self.actions);
        self.apply_actions();
        result.map_err(|error| RelayError::Protocol {
            side: "the client",
            error,
        })
    }

    async fn feed_server(&mut self) -> Result<(), RelayError> {
        let protocol = |error| RelayError::Protocol {
            side: "the database",
            error,
        };
        while let Some(message) = self
            .backend
            .decode(&mut self.server_buf)
            .map_err(protocol)?
        {
            if message.type_byte() == Some(b'T') && self.session.hooks().needs_sources() {
                let description: RowDescription = message.parse().map_err(protocol)?;
                let hooks = self.session.hooks_mut();
                let mut unknown: Vec<u32> = description
                    .fields
                    .iter()
                    .map(|f| f.table_oid)
                    .filter(|oid| *oid != 0 && !hooks.resolved_tables.contains(oid))
                    .collect();
                unknown.sort_unstable();
                unknown.dedup();
                if !unknown.is_empty() {
                    self.catalog.look_up(&unknown, hooks).await?;
                    hooks.resolved_tables.extend(unknown);
                }
            }
            let result = self.session.server_message(message, &mut self.actions);
            self.apply_actions();
            result.map_err(protocol)?;
        }
        Ok(())
    }

    fn apply_actions(&mut self) {
        // Taken and put back, so its capacity serves every batch.
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::ToServer(bytes) => {
                    self.to_server_len += bytes.len();
                    match self.to_server.back_mut() {
                        Some(last) if last.len() + bytes.len() <= COALESCE => {
                            last.extend_from_slice(&bytes)
                        }
                        _ => self.to_server.push_back(BytesMut::from(bytes)),
                    }
                }
                Action::ToClient(bytes) => {
                    self.to_client_len += bytes.len();
                    match self.to_client.back_mut() {
                        Some(ToClient::Data(last)) if last.len() + bytes.len() <= COALESCE => {
                            last.extend_from_slice(&bytes)
                        }
                        _ => self
                            .to_client
                            .push_back(ToClient::Data(BytesMut::from(bytes))),
                    }
                }
                Action::Event(event) => {
                    let hooks = self.session.hooks_mut();
                    if let postern_l7_pg::session::Event::StatementStarted(started) = &event {
                        hooks.statement_started(started.id, &started.sql);
                    }
                    if let Some(audit) = self.trail.on_event(event, |id| hooks.take_masked(id)) {
                        self.to_client.push_back(ToClient::Audit(audit));
                    }
                }
            }
        }
        self.actions = actions;
    }

    /// Writes what it can, then reads what it may; ready once anything moved.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, RelayError>> {
        let mut progress = false;
        while let Some(front) = self.to_server.front_mut() {
            match Pin::new(&mut self.server).poll_write(cx, front) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero("database"))),
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    self.server_unflushed = true;
                    self.to_server_len -= n;
                    front.advance(n);
                    if front.is_empty() {
                        self.to_server.pop_front();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => break,
            }
        }
        // TLS to the database buffers records until flushed.
        if self.server_unflushed {
            match Pin::new(&mut self.server).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.server_unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        if self.client_ended && self.to_server.is_empty() && !self.server_shut {
            // The client is gone: the server sees the end, after all it sent.
            match Pin::new(&mut self.server).poll_shutdown(cx) {
                Poll::Ready(_) => {
                    self.server_shut = true;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if let Poll::Ready(Err(e)) = self.poll_flush_client(cx) {
            return Poll::Ready(Err(e.into()));
        }
        progress |= std::mem::take(&mut self.to_client_moved);
        if progress {
            return Poll::Ready(Ok(Step::Progress));
        }
        let client_backed_up =
            self.to_server_len >= BACKLOG_LIMIT || self.to_client_len >= BACKLOG_LIMIT;
        if !self.client_ended && !client_backed_up {
            self.client_buf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(
                Pin::new(&mut *self.client),
                cx,
                &mut self.client_buf,
            ) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Step::ClientEnded)),
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Step::ClientBytes)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        if !self.server_ended && self.to_client_len < BACKLOG_LIMIT {
            self.server_buf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(
                Pin::new(&mut self.server),
                cx,
                &mut self.server_buf,
            ) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Step::ServerEnded)),
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Step::ServerBytes)),
                // A reset after the client left is the database's way of closing.
                Poll::Ready(Err(e)) if self.client_ended => {
                    let _ = e;
                    return Poll::Ready(Ok(Step::ServerEnded));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

fn write_zero(side: &str) -> RelayError {
    RelayError::Io(io::Error::new(
        io::ErrorKind::WriteZero,
        format!("the {side} connection accepts no more bytes"),
    ))
}

impl<I, C> Pump<'_, I, C>
where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    /// Writes queued data and audit frames to the client, in order; ready
    /// once the queue is empty.
    fn poll_flush_client(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.to_client.front_mut() {
            match front {
                ToClient::Data(bytes) => match Pin::new(&mut *self.client).poll_write(cx, bytes) {
                    Poll::Ready(Ok(n)) => {
                        self.to_client_moved = true;
                        self.to_client_len -= n;
                        bytes.advance(n);
                        if bytes.is_empty() {
                            self.to_client.pop_front();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                ToClient::Audit(_) => {
                    std::task::ready!(self.client.poll_reserve_frame(cx))?;
                    if let Some(ToClient::Audit(audit)) = self.to_client.pop_front() {
                        self.client.send_reserved(Frame {
                            kind: Some(Kind::Audit(audit)),
                        })?;
                    }
                    self.to_client_moved = true;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
