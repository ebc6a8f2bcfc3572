//! What this replica holds in memory: agent control links and sessions waiting
//! for their agent to attach.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_tunnel::proto::{Frame, GatewayMessage};
use tokio::sync::{mpsc, oneshot};
use tonic::Streaming;

use crate::session::FrameResponse;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update under these locks is a single map operation, so a poisoned
    // lock still guards consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An agent's control stream. Messages are boxed so that the channel's block
/// of slots, which every idle agent holds, is 32 pointers rather than 32
/// messages (about 5 KiB per agent).
pub type ControlSender = mpsc::Sender<Box<GatewayMessage>>;

/// One agent control stream held by this replica.
#[derive(Clone)]
pub struct AgentLink {
    pub id: u64,
    pub agent: String,
    pub tx: ControlSender,
}

#[derive(Default)]
pub struct AgentRegistry {
    links: Mutex<HashMap<String, Vec<AgentLink>>>,
    next_id: AtomicU64,
}

impl AgentRegistry {
    pub fn register(&self, agent: &str, tx: ControlSender) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let link = AgentLink {
            id,
            agent: agent.to_owned(),
            tx,
        };
        lock(&self.links)
            .entry(agent.to_owned())
            .or_default()
            .push(link);
        id
    }

    pub fn unregister(&self, agent: &str, id: u64) {
        let mut links = lock(&self.links);
        if let Some(list) = links.get_mut(agent) {
            list.retain(|link| link.id != id);
            if list.is_empty() {
                links.remove(agent);
            }
        }
    }

    /// The newest live link of `agent`: after a reconnect the old link may still
    /// linger until its keepalive times out.
    pub fn pick(&self, agent: &str) -> Option<AgentLink> {
        lock(&self.links)
            .get(agent)
            .and_then(|list| list.iter().rev().find(|l| !l.tx.is_closed()).cloned())
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.pick(agent).is_some()
    }

    /// Number of agent control streams held.
    pub fn link_count(&self) -> usize {
        lock(&self.links).values().map(Vec::len).sum()
    }

    pub fn all_links(&self) -> Vec<AgentLink> {
        lock(&self.links).values().flatten().cloned().collect()
    }

    /// Names of the agents with at least one link here.
    pub fn agent_names(&self) -> Vec<String> {
        lock(&self.links).keys().cloned().collect()
    }
}

/// How a session's agent side arrived: straight from the agent, or spliced
/// through the replica the agent attached to.
pub struct Attached {
    pub inbound: FrameResponse,
    /// The replica that spliced the agent's stream here, if not this one.
    pub via: Option<String>,
}

/// What the Open side hands to the Attach side, and the answer it waits for.
pub struct PendingSession {
    pub agent: String,
    /// The local control link the request went out on; `None` when a peer holds it.
    pub link_id: Option<u64>,
    pub client_inbound: Streaming<Frame>,
    pub tracker: std::sync::Arc<crate::session::SessionTracker>,
    pub attached: oneshot::Sender<Result<Attached, String>>,
}

impl PendingSession {
    /// Hands the agent's stream to the waiting `Open` and returns the user's
    /// stream, counted, to send to the agent; fails if the `Open` gave up.
    pub fn join(self, attached: Attached) -> Result<FrameResponse, crate::refusal::Refusal> {
        let client = crate::session::counted(
            self.client_inbound,
            self.tracker,
            crate::metrics::Direction::Up,
        );
        self.attached.send(Ok(attached)).map_err(|_| {
            crate::refusal::Refusal::new(
                crate::metrics::ErrorKind::AttachTimeout,
                "the session was abandoned before the agent attached",
            )
        })?;
        Ok(client)
    }
}

#[derive(Default)]
pub struct PendingSessions {
    sessions: Mutex<HashMap<String, PendingSession>>,
}

impl PendingSessions {
    pub fn insert(&self, session_id: String, pending: PendingSession) {
        lock(&self.sessions).insert(session_id, pending);
    }

    /// Takes the session if `agent` is the one it was requested from: an agent
    /// can never attach to another agent's session.
    pub fn take(&self, session_id: &str, agent: &str) -> Option<PendingSession> {
        let mut sessions = lock(&self.sessions);
        match sessions.get(session_id) {
            Some(pending) if pending.agent == agent => sessions.remove(session_id),
            _ => None,
        }
    }

    pub fn remove(&self, session_id: &str) {
        lock(&self.sessions).remove(session_id);
    }

    /// The agent could not serve the session.
    pub fn reject(&self, session_id: &str, agent: &str, reason: String) {
        if let Some(pending) = self.take(session_id, agent) {
            let _ = pending.attached.send(Err(reason));
        }
    }

    /// Fails every session waiting on a control link that just went away.
    pub fn fail_link(&self, link_id: u64, reason: &str) {
        let failed: Vec<PendingSession> = {
            let mut sessions = lock(&self.sessions);
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, p)| p.link_id == Some(link_id))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for pending in failed {
            let _ = pending.attached.send(Err(reason.to_owned()));
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session request this replica passed to one of its agents for another
/// replica (the session's ingress); kept until the agent attaches or rejects it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub ingress: String,
    pub agent: String,
    pub link_id: u64,
    pub at: Instant,
}

#[derive(Default)]
pub struct ForwardedSessions {
    sessions: Mutex<HashMap<String, Forwarded>>,
}

impl ForwardedSessions {
    pub fn insert(&self, session_id: String, forwarded: Forwarded) {
        lock(&self.sessions).insert(session_id, forwarded);
    }

    /// Takes the entry if `agent` is the one the request went to.
    pub fn take(&self, session_id: &str, agent: &str) -> Option<Forwarded> {
        let mut sessions = lock(&self.sessions);
        match sessions.get(session_id) {
            Some(forwarded) if forwarded.agent == agent => sessions.remove(session_id),
            _ => None,
        }
    }

    /// Removes and returns the entries of a control link that went away.
    pub fn take_link(&self, link_id: u64) -> Vec<(String, Forwarded)> {
        let mut sessions = lock(&self.sessions);
        let ids: Vec<String> = sessions
            .iter()
            .filter(|(_, f)| f.link_id == link_id)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| sessions.remove(&id).map(|f| (id, f)))
            .collect()
    }

    /// Forgets entries older than `max_age`: their sessions attached elsewhere
    /// (the holder does not see that) or were abandoned.
    pub fn expire(&self, max_age: Duration) {
        let now = Instant::now();
        lock(&self.sessions).retain(|_, f| now.duration_since(f.at) < max_age);
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_register_pick_newest_and_unregister() {
        let registry = AgentRegistry::default();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, rx2) = mpsc::channel(1);
        let first = registry.register("a", tx1);
        let second = registry.register("a", tx2);
        assert_eq!(registry.pick("a").unwrap().id, second);
        drop(rx2);
        assert_eq!(
            registry.pick("a").unwrap().id,
            first,
            "a closed link is skipped"
        );
        registry.unregister("a", first);
        assert!(!registry.is_connected("a"));
        registry.unregister("a", second);
        assert_eq!(registry.link_count(), 0);
        assert!(registry.pick("missing").is_none());
    }

    #[test]
    fn forwarded_sessions_are_taken_by_their_agent_or_link_and_expire() {
        let forwarded = ForwardedSessions::default();
        let entry = |agent: &str, link_id| Forwarded {
            ingress: "gw-a".into(),
            agent: agent.into(),
            link_id,
            at: Instant::now(),
        };
        forwarded.insert("s1".into(), entry("a", 1));
        forwarded.insert("s2".into(), entry("a", 2));
        forwarded.insert("s3".into(), entry("b", 2));
        assert!(
            forwarded.take("s1", "b").is_none(),
            "another agent's session"
        );
        assert_eq!(forwarded.take("s1", "a").unwrap().link_id, 1);
        let mut gone: Vec<String> = forwarded
            .take_link(2)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        gone.sort();
        assert_eq!(gone, ["s2", "s3"]);
        forwarded.insert("s4".into(), entry("a", 3));
        forwarded.expire(Duration::ZERO);
        assert!(forwarded.is_empty());
    }
}
