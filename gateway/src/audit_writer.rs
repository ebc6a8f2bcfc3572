//! The replica's one writer of statement audit: every session hands it its
//! events, in order; it writes them in batches (one transaction each), so a
//! burst of statements from many sessions costs one commit, not one each,
//! and sessions never contend for the store's write lock.

use std::sync::Arc;
use std::time::Duration;

use postern_state::{AuditEvent, AuditSink};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::metrics::{ErrorKind, Metrics};

/// Events written per transaction at most.
const MAX_BATCH: usize = 512;
/// How long the first event of a batch waits for others: a few milliseconds
/// of audit delay turn thousands of commits a second into a few hundred.
const LINGER: Duration = Duration::from_millis(5);

enum Item {
    Event(AuditEvent),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Item>,
}

impl AuditWriter {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(sink: Arc<dyn AuditSink>, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut flushes = Vec::new();
            while let Some(item) = rx.recv().await {
                let deadline = tokio::time::Instant::now() + LINGER;
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    match item {
                        Item::Event(event) => batch.push(event),
                        Item::Flush(done) => flushes.push(done),
                    }
                    // A flush writes at once; otherwise wait for company.
                    if batch.len() < MAX_BATCH && flushes.is_empty() {
                        next = tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten();
                    } else if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty()
                    && let Err(e) = sink.record_batch(&batch).await
                {
                    // Logged and counted per event, never silently dropped.
                    for event in &batch {
                        metrics.error(ErrorKind::AuditUnavailable);
                        error!(error = %e, ?event, "cannot write a statement's audit event");
                    }
                }
                batch.clear();
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Self { tx }
    }

    pub fn send(&self, event: AuditEvent) {
        let _ = self.tx.send(Item::Event(event));
    }

    /// Waits until every event sent so far is written (or failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}
