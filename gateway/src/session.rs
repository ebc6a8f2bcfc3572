//! Accounting for one spliced session: bytes each way, outcome, and the session
//! record written when both directions are done.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use postern_state::{AuditEvent, PolicyStore, SessionEnd, now_ms};
use postern_tunnel::frame::payload_len;
use postern_tunnel::proto::frame::Kind;
use postern_tunnel::proto::{Frame, StatementAudit};
use tonic::Status;
use tracing::{Span, info, warn};

use crate::audit_writer::AuditWriter;
use crate::metrics::{Direction, ErrorKind, Metrics};

pub type FrameResponse = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

/// Shared by the two directions of a session; its drop marks the session's end.
pub struct SessionTracker {
    pub id: String,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    started: AtomicBool,
    /// Whether a Close frame passed in each direction: a stream that ends
    /// without one was cut, whatever the transport said.
    closed_up: AtomicBool,
    closed_down: AtomicBool,
    error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    policy: Arc<dyn PolicyStore>,
    audit: StatementRecorder,
    span: Span,
}

/// Writes the statements an agent reports under the session's identity,
/// which only the ingress knows: the agent cannot name (or spoof) a user.
/// The replica's one [`AuditWriter`] keeps each session's trail in order.
pub struct StatementRecorder {
    user: String,
    connection: String,
    writer: AuditWriter,
}

impl StatementRecorder {
    pub fn new(user: String, connection: String, writer: AuditWriter) -> Self {
        Self {
            user,
            connection,
            writer,
        }
    }
}

impl SessionTracker {
    pub fn new(
        id: String,
        metrics: Arc<Metrics>,
        policy: Arc<dyn PolicyStore>,
        audit: StatementRecorder,
        span: Span,
    ) -> Self {
        Self {
            id,
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            started: AtomicBool::new(false),
            closed_up: AtomicBool::new(false),
            closed_down: AtomicBool::new(false),
            error: Mutex::new(None),
            metrics,
            policy,
            audit,
            span,
        }
    }

    /// Hands one statement the agent reported to the session's writer.
    fn record_statement(&self, statement: StatementAudit) {
        let outcome = match statement.outcome.as_str() {
            // `skipped`: not run after an earlier error in its batch;
            // `protocol_error`: a malformed message ended the session.
            "ok" | "error" | "blocked" | "skipped" | "protocol_error" => statement.outcome.clone(),
            _ => "unknown".to_owned(),
        };
        let event = AuditEvent {
            at_ms: now_ms(),
            actor: self.audit.user.clone(),
            action: "sql.statement".to_owned(),
            target: self.audit.connection.clone(),
            outcome,
            detail: serde_json::json!({
                "statement": statement.statement,
                "parameters": statement.parameters,
                "parameter_values": statement.parameter_values,
                "error_code": statement.error_code,
                "error_message": statement.error_message,
                "rule": statement.rule,
                "rows": statement.rows,
                "duration_us": statement.duration_us,
                "masked_columns": statement.masked_columns,
            })
            .to_string(),
            session_id: Some(self.id.clone()),
        };
        self.metrics.statement(&event.outcome);
        self.audit.writer.send(event);
    }

    /// The agent attached: from here on, the session counts as open.
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.metrics.sessions_open.inc();
        }
    }

    fn fail(&self, reason: String) {
        let mut error = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if error.is_none() {
            *error = Some(reason);
            self.metrics.error(ErrorKind::StreamError);
        }
    }

    fn closed(&self, direction: Direction, close: &postern_tunnel::proto::Close) {
        match direction {
            Direction::Up => self.closed_up.store(true, Ordering::Release),
            Direction::Down => self.closed_down.store(true, Ordering::Release),
        }
        if close.error {
            let side = match direction {
                Direction::Up => "user side",
                Direction::Down => "agent side",
            };
            self.fail(format!("{side} closed with an error: {}", close.reason));
        }
    }
}

impl Drop for SessionTracker {
    fn drop(&mut self) {
        if !self.started.load(Ordering::Acquire) {
            return;
        }
        self.metrics.sessions_open.dec();
        let error = self
            .error
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let end = SessionEnd {
            id: self.id.clone(),
            ended_at_ms: now_ms(),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            outcome: error.clone().unwrap_or_else(|| "ok".to_owned()),
        };
        self.metrics
            .session_ended(if error.is_some() { "error" } else { "ok" });
        self.span.in_scope(|| {
            info!(bytes_up = end.bytes_up, bytes_down = end.bytes_down, outcome = %end.outcome, "session ended")
        });
        let policy = self.policy.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = policy.record_session_end(&end).await {
                    warn!(session_id = %end.id, error = %e, "cannot record the session's end");
                }
            });
        }
    }
}

/// Passes a session's frames through unchanged, counting payload bytes and
/// remembering a stream error as the session's outcome.
pub fn counted<S>(inbound: S, tracker: Arc<SessionTracker>, direction: Direction) -> FrameResponse
where
    S: Stream<Item = Result<Frame, Status>> + Send + 'static,
{
    let counter = match direction {
        Direction::Up => tracker.metrics.bytes_up.clone(),
        Direction::Down => tracker.metrics.bytes_down.clone(),
    };
    Box::pin(inbound.filter_map(move |item| {
        match &item {
            Ok(Frame {
                kind: Some(Kind::Audit(statement)),
            }) => {
                // Only the agent's leg reports statements; from the user's
                // side one is an attempt to forge the audit trail.
                match direction {
                    Direction::Down => tracker.record_statement(statement.clone()),
                    Direction::Up => {
                        tracker.metrics.error(ErrorKind::BadRequest);
                        tracker
                            .span
                            .in_scope(|| warn!("dropped an audit frame sent by the user's side"));
                    }
                }
                return futures::future::ready(None);
            }
            Ok(Frame {
                kind: Some(Kind::Close(close)),
            }) => tracker.closed(direction, close),
            Ok(frame) => {
                let n = payload_len(frame) as u64;
                if n > 0 {
                    counter.inc_by(n);
                    let total = match direction {
                        Direction::Up => &tracker.bytes_up,
                        Direction::Down => &tracker.bytes_down,
                    };
                    total.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(status) => tracker.fail(format!("{:?}: {}", status.code(), status.message())),
        }
        futures::future::ready(Some(item))
    }))
}
