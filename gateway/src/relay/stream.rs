//! One relayed session leg: frames carried between two replicas through their
//! inboxes, with credit-based flow control.
//!
//! Pub/sub has no backpressure: a subscriber that falls behind is disconnected
//! by Redis once its output buffer fills. So each side may have at most
//! [`WINDOW`] bytes in flight towards the other; the receiver grants more
//! ([`RelayCredit`]) as its consumer takes frames. Messages carry a sequence
//! number, and a gap (a message lost with a subscription) resets the stream:
//! bytes are never silently skipped.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{FutureExt, Stream, StreamExt};
use postern_tunnel::proto::frame::Kind as FrameKind;
use postern_tunnel::proto::relay_envelope::Kind;
use postern_tunnel::proto::{Frame, RelayCredit, RelayData};
use postern_tunnel::relay::MAX_BATCH_BYTES;
use prost::Message;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Relay;

/// Bytes (of encoded frames) one side may send before the other grants more.
pub const WINDOW: i64 = 512 * 1024;
/// Credit is returned once this much has been consumed, not per frame.
const CREDIT_EVERY: i64 = WINDOW / 4;

fn frame_cost(frame: &Frame) -> i64 {
    // Empty frames (keepalives) still cost something, so their number is bounded too.
    frame.encoded_len().max(16) as i64
}

/// What both directions of one relayed leg share, kept in the relay's table.
pub struct StreamState {
    pub id: String,
    /// The replica at the other end; only it may send on this stream.
    pub peer: String,
    inbound: Mutex<Inbound>,
    /// Bytes received and not yet taken by the consumer.
    buffered: AtomicI64,
    /// Bytes this side may still send.
    credit: AtomicI64,
    credit_granted: Notify,
    /// Cancelled on reset: both directions stop.
    pub cancel: CancellationToken,
    reset_reason: Mutex<Option<String>>,
    inbound_done: AtomicBool,
    outbound_done: AtomicBool,
    /// The reader left after taking a `Close` frame: it has all it wanted, so
    /// frames still in flight (the `end` message) are dropped, not an error.
    reader_closed: AtomicBool,
}

struct Inbound {
    tx: Option<mpsc::UnboundedSender<Frame>>,
    next_seq: u64,
}

/// Why a delivery broke the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum DeliveryError {
    Gap { expected: u64, got: u64 },
    WindowExceeded,
    Abandoned,
}

impl DeliveryError {
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Gap { .. } => "lost",
            DeliveryError::WindowExceeded => "window_exceeded",
            DeliveryError::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Gap { expected, got } => write!(
                f,
                "a relay message was lost (expected #{expected}, got #{got})"
            ),
            DeliveryError::WindowExceeded => f.write_str("the peer sent more than its window"),
            DeliveryError::Abandoned => f.write_str("the stream's reader went away"),
        }
    }
}

impl StreamState {
    /// A new leg and the stream of frames the other side sends on it.
    pub fn new(id: String, peer: String) -> (Arc<Self>, mpsc::UnboundedReceiver<Frame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Self {
            id,
            peer,
            inbound: Mutex::new(Inbound {
                tx: Some(tx),
                next_seq: 0,
            }),
            buffered: AtomicI64::new(0),
            credit: AtomicI64::new(WINDOW),
            credit_granted: Notify::new(),
            cancel: CancellationToken::new(),
            reset_reason: Mutex::new(None),
            inbound_done: AtomicBool::new(false),
            outbound_done: AtomicBool::new(false),
            reader_closed: AtomicBool::new(false),
        });
        (state, rx)
    }

    /// Hands received frames to the reader. Returns whether this direction ended.
    pub fn deliver(&self, data: RelayData) -> Result<bool, DeliveryError> {
        let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
        if data.seq != inbound.next_seq {
            return Err(DeliveryError::Gap {
                expected: inbound.next_seq,
                got: data.seq,
            });
        }
        inbound.next_seq += 1;
        let cost: i64 = data.frames.iter().map(frame_cost).sum();
        // The sender may overshoot by one batch: it waits for credit, not for
        // enough credit for everything it coalesced.
        let limit = WINDOW + 2 * MAX_BATCH_BYTES as i64;
        if self.buffered.fetch_add(cost, Ordering::AcqRel) + cost > limit {
            return Err(DeliveryError::WindowExceeded);
        }
        let Some(tx) = &inbound.tx else {
            return Err(DeliveryError::Abandoned);
        };
        for frame in data.frames {
            if tx.send(frame).is_err() && !self.reader_closed.load(Ordering::Acquire) {
                return Err(DeliveryError::Abandoned);
            }
        }
        if data.end {
            inbound.tx = None;
            self.inbound_done.store(true, Ordering::Release);
        }
        Ok(data.end)
    }

    pub fn grant(&self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX).min(WINDOW);
        self.credit.fetch_add(bytes, Ordering::AcqRel);
        self.credit_granted.notify_one();
    }

    /// Ends both directions; the reader sees `reason` as an error.
    pub fn reset(&self, reason: String) {
        let mut stored = self.reset_reason.lock().unwrap_or_else(|e| e.into_inner());
        if stored.is_none() {
            *stored = Some(reason);
        }
        drop(stored);
        self.inbound.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
        self.cancel.cancel();
    }

    fn reset_reason(&self) -> Option<String> {
        self.reset_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Both directions ended cleanly, or the stream was reset.
    pub fn finished(&self) -> bool {
        self.cancel.is_cancelled()
            || (self.inbound_done.load(Ordering::Acquire)
                && self.outbound_done.load(Ordering::Acquire))
    }

    async fn wait_for_credit(&self) -> bool {
        loop {
            let granted = self.credit_granted.notified();
            if self.credit.load(Ordering::Acquire) > 0 {
                return true;
            }
            tokio::select! {
                _ = granted => {}
                _ = self.cancel.cancelled() => return false,
            }
        }
    }
}

/// The frames the other side sends, as a gRPC-style stream for the local leg.
/// Taking a frame returns its cost as credit.
pub struct RelayInbound {
    pub(super) rx: mpsc::UnboundedReceiver<Frame>,
    pub(super) state: Arc<StreamState>,
    pub(super) relay: Arc<Relay>,
    consumed: i64,
    ended: bool,
    /// A `Close` frame went to the reader: the other side ended this direction.
    saw_close: bool,
}

impl RelayInbound {
    pub(super) fn new(
        rx: mpsc::UnboundedReceiver<Frame>,
        state: Arc<StreamState>,
        relay: Arc<Relay>,
    ) -> Self {
        Self {
            rx,
            state,
            relay,
            consumed: 0,
            ended: false,
            saw_close: false,
        }
    }
}

impl Stream for RelayInbound {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                if matches!(frame.kind, Some(FrameKind::Close(_))) {
                    self.saw_close = true;
                }
                let cost = frame_cost(&frame);
                self.state.buffered.fetch_sub(cost, Ordering::AcqRel);
                self.consumed += cost;
                if self.consumed >= CREDIT_EVERY {
                    let bytes = std::mem::take(&mut self.consumed) as u64;
                    self.relay.post(
                        &self.state.peer,
                        Kind::Credit(RelayCredit {
                            stream_id: self.state.id.clone(),
                            bytes,
                        }),
                    );
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                match self.state.reset_reason() {
                    Some(reason) => Poll::Ready(Some(Err(Status::unavailable(format!(
                        "relayed stream {} broke: {reason}",
                        self.state.id
                    ))))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RelayInbound {
    fn drop(&mut self) {
        // A reader that leaves after the Close frame is done; the `end` message
        // may simply still be on its way. One that leaves earlier means the
        // local leg is gone.
        if self.saw_close {
            self.state.reader_closed.store(true, Ordering::Release);
        } else if !self.ended && !self.state.finished() {
            self.relay.reset_stream(
                &self.state,
                DeliveryError::Abandoned.reason(),
                "the local leg ended",
            );
        }
        self.relay.forget_if_finished(&self.state);
    }
}

/// Sends `source`'s frames to the other side within the credit it grants,
/// coalescing what is ready into one message. Ends with an `end` message, or
/// resets the stream if the source fails.
pub async fn pump<S>(relay: Arc<Relay>, state: Arc<StreamState>, mut source: S)
where
    S: Stream<Item = Result<Frame, Status>> + Send + Unpin + 'static,
{
    let mut seq = 0u64;
    let mut ended = false;
    let mut failure = None;
    // A frame taken from the source and not yet batched.
    let mut next_frame: Option<Frame> = None;
    while !ended && failure.is_none() {
        if !state.wait_for_credit().await {
            return;
        }
        if next_frame.is_none() {
            let next = tokio::select! {
                next = source.next() => next,
                _ = state.cancel.cancelled() => return,
            };
            match next {
                Some(Ok(frame)) => next_frame = Some(frame),
                Some(Err(status)) => failure = Some(status.message().to_owned()),
                None => ended = true,
            }
        }
        let mut frames = Vec::new();
        let mut cost = 0i64;
        let budget = state
            .credit
            .load(Ordering::Acquire)
            .min(MAX_BATCH_BYTES as i64);
        loop {
            if let Some(frame) = next_frame.take() {
                cost += frame_cost(&frame);
                frames.push(frame);
            }
            if cost >= budget || ended || failure.is_some() {
                break;
            }
            match source.next().now_or_never() {
                Some(Some(Ok(frame))) => next_frame = Some(frame),
                Some(Some(Err(status))) => failure = Some(status.message().to_owned()),
                Some(None) => ended = true,
                None => break,
            }
        }
        if frames.is_empty() && !ended {
            continue;
        }
        state.credit.fetch_sub(cost, Ordering::AcqRel);
        let data = RelayData {
            stream_id: state.id.clone(),
            seq,
            frames,
            end: ended,
        };
        seq += 1;
        match relay.send(&state.peer, Kind::Data(data)).await {
            Ok(true) => {}
            // The peer's inbox subscription is gone: so is this message.
            Ok(false) => {
                let detail = format!("replica {} is not listening to its relay inbox", state.peer);
                relay.reset_stream(&state, "lost", &detail);
                return;
            }
            Err(e) => {
                relay.reset_stream(&state, "publish_failed", &format!("cannot publish: {e}"));
                return;
            }
        }
    }
    match failure {
        Some(reason) => relay.reset_stream(&state, "source_failed", &reason),
        None => {
            state.outbound_done.store(true, Ordering::Release);
            relay.forget_if_finished(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seq: u64, payload: usize, end: bool) -> RelayData {
        RelayData {
            stream_id: "s".into(),
            seq,
            frames: vec![postern_tunnel::frame::data(
                0,
                bytes::Bytes::from(vec![0u8; payload]),
            )],
            end,
        }
    }

    #[test]
    fn deliveries_are_checked_for_order_window_and_reader() {
        let (state, mut rx) = StreamState::new("s".into(), "gw-b".into());
        assert_eq!(state.deliver(data(0, 10, false)), Ok(false));
        assert_eq!(
            state.deliver(data(2, 10, false)),
            Err(DeliveryError::Gap {
                expected: 1,
                got: 2
            })
        );
        let (state, rx2) = StreamState::new("s".into(), "gw-b".into());
        let mut seq = 0;
        let overflow = loop {
            match state.deliver(data(seq, 200_000, false)) {
                Ok(_) => seq += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(overflow, DeliveryError::WindowExceeded);
        assert!(
            seq as i64 * 200_000 <= WINDOW + 2 * MAX_BATCH_BYTES as i64,
            "no more than the window and one batch were buffered"
        );
        drop(rx2);
        assert!(rx.try_recv().is_ok());
        let (state, rx3) = StreamState::new("s".into(), "gw-b".into());
        drop(rx3);
        assert_eq!(
            state.deliver(data(0, 1, false)),
            Err(DeliveryError::Abandoned)
        );
    }

    #[test]
    fn the_end_closes_the_reader_and_a_reset_cancels_both_directions() {
        let (state, mut rx) = StreamState::new("s".into(), "gw-b".into());
        assert_eq!(state.deliver(data(0, 1, true)), Ok(true));
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "nothing after the end");
        assert!(!state.finished(), "the outbound direction is still open");
        state.reset("gone".into());
        assert!(state.finished());
        assert_eq!(state.reset_reason().as_deref(), Some("gone"));
    }

    fn relay() -> Arc<Relay> {
        use postern_state::memory::MemoryRouteStore;
        use postern_tunnel::Secret;
        use postern_tunnel::peer::PeerKey;
        Relay::new(
            "gw-a".into(),
            PeerKey::new(&Secret::new("relay test key")),
            Arc::new(MemoryRouteStore::new()),
            Arc::new(crate::metrics::Metrics::new()),
        )
    }

    fn close_then(seq: u64) -> RelayData {
        RelayData {
            stream_id: "s".into(),
            seq,
            frames: vec![postern_tunnel::frame::close(None)],
            end: false,
        }
    }

    fn resets(relay: &Relay) -> String {
        relay
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("postern_relay_resets_total") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The reader may leave as soon as it has the Close frame; the `end`
    /// message still on its way is not an abandoned stream.
    #[tokio::test]
    async fn a_reader_leaving_after_close_is_not_an_abandoned_stream() {
        let relay = relay();
        let (state, mut inbound) = relay.open_stream("s".into(), "gw-b".into());
        state.deliver(close_then(0)).unwrap();
        let frame = inbound.next().await.unwrap().unwrap();
        assert!(matches!(frame.kind, Some(FrameKind::Close(_))));
        drop(inbound);
        assert!(!state.cancel.is_cancelled(), "no reset");
        let late = RelayData {
            end: true,
            ..data(1, 10, true)
        };
        assert_eq!(state.deliver(late), Ok(true), "late frames are dropped");
        assert_eq!(resets(&relay), "");

        // Leaving before the Close frame still resets the stream.
        let (state, inbound) = relay.open_stream("t".into(), "gw-b".into());
        state.deliver(data(0, 10, false)).unwrap();
        drop(inbound);
        assert!(state.cancel.is_cancelled());
        assert_eq!(
            resets(&relay),
            "postern_relay_resets_total{reason=\"abandoned\"} 1"
        );
    }

    #[tokio::test]
    async fn credit_is_awaited_and_granted_up_to_the_window() {
        let (state, _rx) = StreamState::new("s".into(), "gw-b".into());
        state.credit.store(0, Ordering::Release);
        let waiter = {
            let state = state.clone();
            tokio::spawn(async move { state.wait_for_credit().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        state.grant(u64::MAX);
        assert!(waiter.await.unwrap());
        assert_eq!(state.credit.load(Ordering::Acquire), WINDOW);
        state.credit.store(0, Ordering::Release);
        state.reset("stop".into());
        assert!(!state.wait_for_credit().await, "a reset ends the wait");
    }
}
