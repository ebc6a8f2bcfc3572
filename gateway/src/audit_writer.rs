//! The replica's one writer of statement audit: every session hands it its
//! events, in order; it writes them in batches (one transaction each), so a
//! burst of statements from many sessions costs one commit, not one each,
//! and sessions never contend for the store's write lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use postern_state::{AuditEvent, AuditSink};
use tokio::sync::{Notify, mpsc, oneshot};
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
    queue: Arc<Queue>,
}

/// What senders tell the writer besides the items themselves: the writer
/// lingers without listening to the channel (a wake-up per statement costs
/// more than the statement's own audit work), so a full batch or a flush
/// must wake it.
#[derive(Default)]
struct Queue {
    queued: AtomicUsize,
    wake: Notify,
}

impl AuditWriter {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(sink: Arc<dyn AuditSink>, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let queue = Arc::new(Queue::default());
        let writer_queue = queue.clone();
        tokio::spawn(async move {
            let queue = writer_queue;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut flushes = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                let mut lingered = false;
                while let Some(item) = next.take() {
                    queue.queued.fetch_sub(1, Ordering::AcqRel);
                    match item {
                        Item::Event(event) => batch.push(event),
                        Item::Flush(done) => flushes.push(done),
                    }
                    if batch.len() >= MAX_BATCH {
                        break;
                    }
                    next = rx.try_recv().ok();
                    // Nothing more yet: wait once for company, unless a
                    // flush asks for the batch now.
                    if next.is_none() && !lingered && flushes.is_empty() {
                        lingered = true;
                        tokio::select! {
                            _ = tokio::time::sleep(LINGER) => {}
                            _ = queue.wake.notified() => {}
                        }
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
        Self { tx, queue }
    }

    pub fn send(&self, event: AuditEvent) {
        let queued = self.queue.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if self.tx.send(Item::Event(event)).is_ok() && queued == MAX_BATCH {
            self.queue.wake.notify_one();
        }
    }

    /// Waits until every event sent so far is written (or failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        self.queue.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Item::Flush(done)).is_ok() {
            self.queue.wake.notify_one();
            let _ = written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use postern_state::{AuditQuery, StoreResult};

    use super::*;

    /// Keeps the batches it was given.
    #[derive(Default)]
    struct Batches(Mutex<Vec<Vec<String>>>);

    #[async_trait::async_trait]
    impl AuditSink for Batches {
        async fn record(&self, event: &AuditEvent) -> StoreResult<()> {
            self.record_batch(std::slice::from_ref(event)).await
        }
        async fn record_batch(&self, events: &[AuditEvent]) -> StoreResult<()> {
            let batch = events.iter().map(|e| e.target.clone()).collect();
            self.0.lock().unwrap().push(batch);
            Ok(())
        }
        async fn events(&self, _: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
            Ok(Vec::new())
        }
    }

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            at_ms: 0,
            actor: "ada".into(),
            action: "sql.select".into(),
            target: n.to_string(),
            outcome: "ok".into(),
            detail: String::new(),
            session_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_written_in_order_in_bounded_batches() {
        let sink = Arc::new(Batches::default());
        let writer = AuditWriter::start(sink.clone(), Arc::new(Metrics::new()));
        // A few events linger for company and go in one batch.
        for n in 0..3 {
            writer.send(event(n));
        }
        tokio::time::sleep(LINGER * 2).await;
        assert_eq!(*sink.0.lock().unwrap(), vec![vec!["0", "1", "2"]]);

        // A burst bigger than a batch is cut at MAX_BATCH, nothing lost or reordered.
        let burst = 2 * MAX_BATCH + 7;
        for n in 0..burst {
            writer.send(event(n));
        }
        writer.flush().await;
        let batches = sink.0.lock().unwrap().split_off(1);
        assert!(batches.iter().all(|b| b.len() <= MAX_BATCH), "{batches:?}");
        let written: Vec<String> = batches.into_iter().flatten().collect();
        let sent: Vec<String> = (0..burst).map(|n| n.to_string()).collect();
        assert_eq!(written, sent);
    }

    /// A flush does not wait out the linger: it is answered as soon as what
    /// was sent before it is written.
    #[tokio::test(start_paused = true)]
    async fn a_flush_writes_at_once() {
        let sink = Arc::new(Batches::default());
        let writer = AuditWriter::start(sink.clone(), Arc::new(Metrics::new()));
        writer.send(event(1));
        // Let the writer take the event and start lingering.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let started = tokio::time::Instant::now();
        writer.flush().await;
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the flush woke the writer"
        );
        assert_eq!(*sink.0.lock().unwrap(), vec![vec!["1"]]);
    }
}
