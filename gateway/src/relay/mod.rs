//! Relay mode: the peer calls (pass a session request on, reject it, splice a
//! session) carried through each replica's inbox in the route store instead
//! of a direct link, for platforms where replicas cannot dial each other
//! (Cloud Run instances are not addressable). Selected with
//! `POSTERN_PEER_TRANSPORT=relay`.
//!
//! Every message is sealed with the peer secret (`postern_tunnel::relay`).
//! Calls are answered by a reply with the same id; spliced frames flow as
//! ordered, credit-limited [`stream`]s.

pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use postern_state::{ReplicaInfo, RouteStore, StoreResult};
use postern_tunnel::peer::PeerKey;
use postern_tunnel::proto::relay_call::Kind as CallKind;
use postern_tunnel::proto::relay_envelope::Kind;
use postern_tunnel::proto::{
    Frame, PeerSessionRejected, PeerSessionRequest, RelayCall, RelayEnvelope, RelayReply,
    RelayReset, RelaySplice,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::metrics::{ErrorKind, Metrics};
use crate::peer::client::PEER_CALL_TIMEOUT;
use crate::refusal::Refusal;
use crate::session::FrameResponse;
use crate::shared::Shared;
use stream::{RelayInbound, StreamState, pump};

/// Pause between attempts to subscribe to this replica's inbox.
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(250);

pub struct Relay {
    replica_id: String,
    key: PeerKey,
    routes: Arc<dyn RouteStore>,
    metrics: Arc<Metrics>,
    calls: Mutex<HashMap<u64, oneshot::Sender<RelayReply>>>,
    next_call: AtomicU64,
    streams: Mutex<HashMap<String, Arc<StreamState>>>,
    /// Replies, credits and resets, published in order by one task so that
    /// synchronous code (a stream being polled) can send them.
    outbox: mpsc::UnboundedSender<(String, Kind)>,
    outbox_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, Kind)>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    pub fn new(
        replica_id: String,
        key: PeerKey,
        routes: Arc<dyn RouteStore>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            replica_id,
            key,
            routes,
            metrics,
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            streams: Mutex::new(HashMap::new()),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
        })
    }

    pub fn key(&self) -> &PeerKey {
        &self.key
    }

    /// Relayed legs this replica carries now.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Publishes to `to`'s inbox; returns whether anyone there listened.
    async fn send(&self, to: &str, kind: Kind) -> StoreResult<bool> {
        let envelope = RelayEnvelope {
            from_replica: self.replica_id.clone(),
            sent_at_ms: 0,
            kind: Some(kind),
        };
        let message = postern_tunnel::relay::seal(&self.key, envelope, SystemTime::now());
        let received = self.routes.publish(to, message).await?;
        self.metrics.relay_message(true);
        Ok(received > 0)
    }

    /// Sends without waiting, after everything posted before.
    fn post(&self, to: &str, kind: Kind) {
        let _ = self.outbox.send((to.to_owned(), kind));
    }

    async fn call(&self, to: &ReplicaInfo, kind: CallKind) -> Result<(), Status> {
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.calls).insert(call_id, tx);
        let call = RelayCall {
            call_id,
            kind: Some(kind),
        };
        let answer = async {
            let heard = self.send(&to.id, Kind::Call(call)).await.map_err(|e| {
                Status::unavailable(format!(
                    "cannot reach replica {} through the relay: {e}",
                    to.id
                ))
            })?;
            // Nobody subscribed to its inbox: no answer will ever come.
            if !heard {
                return Err(Status::unavailable(format!(
                    "replica {} is not listening to its relay inbox",
                    to.id
                )));
            }
            rx.await
                .map_err(|_| Status::unavailable("the relay stopped"))
        };
        let reply = tokio::time::timeout(PEER_CALL_TIMEOUT, answer).await;
        lock(&self.calls).remove(&call_id);
        match reply {
            Ok(Ok(reply)) if reply.code == 0 => Ok(()),
            Ok(Ok(reply)) => Err(Status::new(Code::from_i32(reply.code), reply.message)),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "replica {} did not answer through the relay within {} ms",
                to.id,
                PEER_CALL_TIMEOUT.as_millis()
            ))),
        }
    }

    pub async fn request_session(
        &self,
        holder: &ReplicaInfo,
        message: PeerSessionRequest,
    ) -> Result<(), Status> {
        self.call(holder, CallKind::RequestSession(message)).await
    }

    pub async fn reject_session(
        &self,
        ingress: &ReplicaInfo,
        message: PeerSessionRejected,
    ) -> Result<(), Status> {
        self.call(ingress, CallKind::RejectSession(message)).await
    }

    /// Splices an agent's stream (`outbound`) to the session's ingress; the
    /// returned stream carries the user's frames back.
    pub async fn splice<S>(
        self: &Arc<Self>,
        ingress: &ReplicaInfo,
        session_id: &str,
        agent: &str,
        outbound: S,
    ) -> Result<FrameResponse, Status>
    where
        S: Stream<Item = Frame> + Send + 'static,
    {
        let stream_id = uuid::Uuid::new_v4().simple().to_string();
        let (state, inbound) = self.open_stream(stream_id.clone(), ingress.id.clone());
        let splice = RelaySplice {
            session_id: session_id.to_owned(),
            agent: agent.to_owned(),
            stream_id,
            traceparent: postern_telemetry::propagate::traceparent_of(&tracing::Span::current()),
        };
        if let Err(status) = self.call(ingress, CallKind::Splice(splice)).await {
            self.discard(&state);
            return Err(status);
        }
        tokio::spawn(pump(
            self.clone(),
            state,
            Box::pin(outbound.map(Ok::<_, Status>)),
        ));
        Ok(Box::pin(inbound))
    }

    fn open_stream(self: &Arc<Self>, id: String, peer: String) -> (Arc<StreamState>, RelayInbound) {
        let (state, rx) = StreamState::new(id.clone(), peer);
        lock(&self.streams).insert(id, state.clone());
        self.metrics.relay_streams.set(self.stream_count() as i64);
        (state.clone(), RelayInbound::new(rx, state, self.clone()))
    }

    /// Drops a stream that never carried anything, without telling the peer.
    fn discard(&self, state: &Arc<StreamState>) {
        state.reset("the splice was refused".into());
        self.forget(&state.id);
    }

    fn forget(&self, id: &str) {
        lock(&self.streams).remove(id);
        self.metrics.relay_streams.set(self.stream_count() as i64);
    }

    fn forget_if_finished(&self, state: &StreamState) {
        if state.finished() {
            self.forget(&state.id);
        }
    }

    /// Ends a stream abnormally on both sides.
    fn reset_stream(&self, state: &StreamState, reason: &'static str, detail: &str) {
        if state.cancel.is_cancelled() {
            return;
        }
        debug!(stream = %state.id, peer = %state.peer, reason, detail, "relayed stream reset");
        self.metrics.relay_reset(reason);
        state.reset(detail.to_owned());
        self.post(
            &state.peer,
            Kind::Reset(RelayReset {
                stream_id: state.id.clone(),
                reason: detail.to_owned(),
            }),
        );
        self.forget(&state.id);
    }

    /// Resets the streams whose other end is no longer a live replica.
    pub fn retain(&self, live: &HashMap<String, ReplicaInfo>) {
        let gone: Vec<Arc<StreamState>> = lock(&self.streams)
            .values()
            .filter(|s| !live.contains_key(&s.peer))
            .cloned()
            .collect();
        for state in gone {
            self.reset_stream(
                &state,
                "peer_gone",
                &format!("replica {} is gone", state.peer),
            );
        }
    }

    fn reset_all(&self, reason: &'static str, detail: &str) {
        let all: Vec<Arc<StreamState>> = lock(&self.streams).values().cloned().collect();
        for state in all {
            self.reset_stream(&state, reason, detail);
        }
    }

    fn stream(&self, id: &str) -> Option<Arc<StreamState>> {
        lock(&self.streams).get(id).cloned()
    }
}

/// Serves this replica's inbox until it stops: subscribes (again after any
/// loss, resetting the streams that may have lost messages) and dispatches.
/// `subscribed` fires the first time the subscription is active.
pub async fn run(shared: Arc<Shared>, relay: Arc<Relay>, subscribed: oneshot::Sender<()>) {
    if let Some(outbox) = lock(&relay.outbox_rx).take() {
        tokio::spawn(publish_outbox(relay.clone(), outbox, shared.stop.clone()));
    }
    let mut subscribed = Some(subscribed);
    loop {
        let inbox = tokio::select! {
            inbox = relay.routes.subscribe(&relay.replica_id) => inbox,
            _ = shared.stop.cancelled() => break,
        };
        let mut inbox = match inbox {
            Ok(inbox) => inbox,
            Err(e) => {
                shared.route_store_error("subscribe", &e);
                tokio::select! {
                    _ = tokio::time::sleep(RESUBSCRIBE_BACKOFF) => continue,
                    _ = shared.stop.cancelled() => break,
                }
            }
        };
        if let Some(subscribed) = subscribed.take() {
            let _ = subscribed.send(());
        } else {
            info!("relay inbox subscribed again");
        }
        loop {
            let message = tokio::select! {
                message = inbox.next() => message,
                _ = shared.stop.cancelled() => None,
            };
            match message {
                Some(message) => dispatch(&shared, &relay, message),
                None => break,
            }
        }
        if shared.stop.is_cancelled() {
            break;
        }
        warn!("relay inbox subscription lost: relayed streams on this replica end");
        relay.reset_all("lost", "the relay inbox subscription was lost");
    }
    relay.reset_all("stopping", "the replica stopped");
}

async fn publish_outbox(
    relay: Arc<Relay>,
    mut outbox: mpsc::UnboundedReceiver<(String, Kind)>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = outbox.recv() => next,
            _ = stop.cancelled() => None,
        };
        let Some((to, kind)) = next else { break };
        if let Err(e) = relay.send(&to, kind).await {
            debug!(%to, error = %e, "cannot publish a relay message");
        }
    }
}

fn dispatch(shared: &Arc<Shared>, relay: &Arc<Relay>, message: Bytes) {
    let envelope = match postern_tunnel::relay::open(relay.key(), &message, SystemTime::now()) {
        Ok(envelope) => envelope,
        Err(e) => {
            shared.refuse(Refusal::new(ErrorKind::PeerUnauthenticated, e.to_string()));
            warn!(error = %e, "relay message refused");
            return;
        }
    };
    relay.metrics.relay_message(false);
    let from = envelope.from_replica;
    match envelope.kind {
        Some(Kind::Call(call)) => answer_call(shared, relay, from, call),
        Some(Kind::Reply(reply)) => {
            if let Some(waiting) = lock(&relay.calls).remove(&reply.call_id) {
                let _ = waiting.send(reply);
            }
        }
        Some(Kind::Data(data)) => {
            let Some(state) = relay.stream(&data.stream_id).filter(|s| s.peer == from) else {
                if !data.end {
                    // Tell the sender to stop sending on a stream that is over here.
                    relay.post(
                        &from,
                        Kind::Reset(RelayReset {
                            stream_id: data.stream_id,
                            reason: "no such relayed stream".into(),
                        }),
                    );
                }
                return;
            };
            match state.deliver(data) {
                Ok(_) => relay.forget_if_finished(&state),
                Err(e) => relay.reset_stream(&state, e.reason(), &e.to_string()),
            }
        }
        Some(Kind::Credit(credit)) => {
            if let Some(state) = relay.stream(&credit.stream_id).filter(|s| s.peer == from) {
                state.grant(credit.bytes);
            }
        }
        Some(Kind::Reset(reset)) => {
            if let Some(state) = relay.stream(&reset.stream_id).filter(|s| s.peer == from) {
                relay.metrics.relay_reset("remote");
                state.reset(format!("replica {from}: {}", reset.reason));
                relay.forget(&state.id);
            }
        }
        None => {}
    }
}

fn reply(relay: &Relay, to: &str, call_id: u64, result: Result<(), Refusal>) {
    let (code, message) = match result {
        Ok(()) => (0, String::new()),
        Err(refusal) => (refusal.grpc_code() as i32, refusal.message),
    };
    relay.post(
        to,
        Kind::Reply(RelayReply {
            call_id,
            code,
            message,
        }),
    );
}

fn answer_call(shared: &Arc<Shared>, relay: &Arc<Relay>, from: String, call: RelayCall) {
    let call_id = call.call_id;
    match call.kind {
        Some(CallKind::RequestSession(request)) => {
            // Waits on an agent's control queue: not in the dispatch loop.
            let (shared, relay) = (shared.clone(), relay.clone());
            tokio::spawn(async move {
                let result = crate::peer::pass_on_request(&shared, from.clone(), request).await;
                reply(&relay, &from, call_id, result);
            });
        }
        Some(CallKind::RejectSession(rejected)) => {
            shared
                .pending
                .reject(&rejected.session_id, &rejected.agent, rejected.reason);
            reply(relay, &from, call_id, Ok(()));
        }
        Some(CallKind::Splice(splice)) => {
            if relay.stream(&splice.stream_id).is_some() {
                let refusal = Refusal::new(ErrorKind::BadRequest, "relayed stream id in use");
                return reply(relay, &from, call_id, Err(shared.refuse(refusal)));
            }
            let (state, inbound) = relay.open_stream(splice.stream_id, from.clone());
            let joined = crate::peer::accept_splice(
                shared,
                from.clone(),
                &splice.session_id,
                &splice.agent,
                Box::pin(inbound),
                &splice.traceparent,
            );
            match joined {
                Ok(client) => {
                    reply(relay, &from, call_id, Ok(()));
                    tokio::spawn(pump(relay.clone(), state, client));
                }
                Err(refusal) => {
                    relay.discard(&state);
                    reply(relay, &from, call_id, Err(refusal));
                }
            }
        }
        None => reply(
            relay,
            &from,
            call_id,
            Err(Refusal::new(ErrorKind::BadRequest, "empty relay call")),
        ),
    }
}
