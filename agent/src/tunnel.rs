//! The agent's tunnels: several slots, each keeping one control stream open to
//! a different gateway replica (each on its own connection, so a load balancer
//! spreads them), reconnecting with backoff, moving make-before-break when a
//! replica drains, and refreshed now and then so tunnels spread over new replicas.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_tunnel::http2::{EndpointError, lazy_channel};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::control::{self, ControlEvent, ControlTask};

/// Tries to land a slot on a replica no other slot holds before settling for one.
const MAX_DUPLICATE_TRIES: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    Connecting,
    Connected {
        /// The replica of the first connected slot.
        replica_id: String,
        agent_name: String,
    },
    Stopped,
}

/// What the slots share: which replica each holds, and how many exist.
struct Tunnels {
    held: watch::Sender<BTreeMap<usize, String>>,
    live_replicas: watch::Sender<usize>,
    status: watch::Sender<AgentStatus>,
    agent_name: Mutex<String>,
}

impl Tunnels {
    fn update_status(&self) {
        let held = self.held.borrow().clone();
        let status = match held.values().next() {
            Some(replica_id) => AgentStatus::Connected {
                replica_id: replica_id.clone(),
                agent_name: self
                    .agent_name
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            },
            None => AgentStatus::Connecting,
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status && *current != AgentStatus::Stopped;
            if changed {
                *current = status;
            }
            changed
        });
    }

    fn hold(&self, slot: usize, replica: &str, agent_name: &str) {
        *self.agent_name.lock().unwrap_or_else(|e| e.into_inner()) = agent_name.to_owned();
        self.held.send_modify(|held| {
            held.insert(slot, replica.to_owned());
        });
        self.update_status();
    }

    fn release(&self, slot: usize) {
        self.held.send_modify(|held| {
            held.remove(&slot);
        });
        self.update_status();
    }

    /// Whether landing `slot` on `replica` would waste it while another
    /// replica holds none of this agent's tunnels.
    fn is_wasteful(&self, slot: usize, replica: &str) -> bool {
        let held = self.held.borrow();
        let others: std::collections::HashSet<&String> = held
            .iter()
            .filter(|(s, _)| **s != slot)
            .map(|(_, r)| r)
            .collect();
        others.iter().any(|r| r.as_str() == replica) && *self.live_replicas.borrow() > others.len()
    }
}

/// A running agent. Dropping the handle does not stop it; call [`AgentHandle::stop`].
pub struct AgentHandle {
    status: watch::Receiver<AgentStatus>,
    held: watch::Receiver<BTreeMap<usize, String>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl AgentHandle {
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// The distinct replicas this agent holds tunnels to now, sorted.
    pub fn replicas(&self) -> Vec<String> {
        let mut replicas: Vec<String> = self.held.borrow().values().cloned().collect();
        replicas.sort();
        replicas.dedup();
        replicas
    }

    /// Waits until tunnels reach `count` distinct replicas.
    pub async fn wait_replicas(&self, count: usize, timeout: Duration) -> Option<Vec<String>> {
        let mut held = self.held.clone();
        let reached = held.wait_for(|held| {
            held.values()
                .collect::<std::collections::HashSet<_>>()
                .len()
                >= count
        });
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(_)) => Some(self.replicas()),
            _ => None,
        }
    }

    /// Waits until the agent holds a control stream; returns the replica's id.
    pub async fn wait_connected(&self, timeout: Duration) -> Option<String> {
        let mut status = self.status.clone();
        let connected = status.wait_for(|s| matches!(s, AgentStatus::Connected { .. }));
        match tokio::time::timeout(timeout, connected).await {
            Ok(Ok(status)) => match &*status {
                AgentStatus::Connected { replica_id, .. } => Some(replica_id.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts the agent in the background.
pub fn spawn(config: AgentConfig) -> Result<AgentHandle, EndpointError> {
    // Fail now on a bad URL or TLS setting rather than in every slot later.
    lazy_channel(&config.gateway_url, config.ca_pem.as_deref())?;
    let (status_tx, status) = watch::channel(AgentStatus::Connecting);
    let (held_tx, held) = watch::channel(BTreeMap::new());
    let tunnels = Arc::new(Tunnels {
        held: held_tx,
        live_replicas: watch::Sender::new(1),
        status: status_tx,
        agent_name: Mutex::new(String::new()),
    });
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(config, tunnels, cancel.clone()));
    Ok(AgentHandle {
        status,
        held,
        cancel,
        task,
    })
}

async fn run(config: AgentConfig, tunnels: Arc<Tunnels>, cancel: CancellationToken) {
    let sessions = CancellationToken::new();
    let slots: Vec<JoinHandle<()>> = (0..config.tunnels.max(1))
        .map(|index| {
            let span = info_span!("tunnel", slot = index);
            tokio::spawn(
                slot(
                    index,
                    config.clone(),
                    tunnels.clone(),
                    sessions.clone(),
                    cancel.clone(),
                )
                .instrument(span),
            )
        })
        .collect();
    for slot in slots {
        let _ = slot.await;
    }
    sessions.cancel();
    tunnels.status.send_replace(AgentStatus::Stopped);
}

enum SlotEnd {
    /// Replace the stream, keeping the old one until the new one is up.
    Move(&'static str),
    /// Fewer replicas than slots now: this slot rests until more appear.
    Retire,
    Ended(Result<(), tonic::Status>),
}

/// Keeps one tunnel up. Slot `n` runs only while more than `n` replicas exist.
async fn slot(
    index: usize,
    config: AgentConfig,
    tunnels: Arc<Tunnels>,
    sessions: CancellationToken,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(config.reconnect_base, config.reconnect_max);
    let mut live = tunnels.live_replicas.subscribe();
    let mut previous: Option<ControlTask> = None;
    let mut duplicates = 0u32;
    loop {
        tokio::select! {
            enough = live.wait_for(|n| *n > index) => if enough.is_err() { return },
            _ = cancel.cancelled() => return,
        }
        // A fresh connection each time, so a load balancer may pick another replica.
        let channel = match lazy_channel(&config.gateway_url, config.ca_pem.as_deref()) {
            Ok(channel) => channel,
            Err(e) => {
                warn!(error = %e, "cannot build the gateway channel");
                return;
            }
        };
        let mut task = control::start(config.clone(), channel, sessions.clone());
        let welcome = loop {
            tokio::select! {
                event = task.events.recv() => match event {
                    Some(ControlEvent::Welcome { replica_id, agent_name, live_replicas }) => {
                        break Some((replica_id, agent_name, live_replicas));
                    }
                    Some(ControlEvent::Ended(outcome)) => {
                        log_end(&config, &outcome);
                        break None;
                    }
                    Some(_) => {}
                    None => break None,
                },
                _ = cancel.cancelled() => return,
            }
        };
        let Some((replica_id, agent_name, live_replicas)) = welcome else {
            if !pause(backoff.next_delay(), &cancel).await {
                return;
            }
            continue;
        };
        tunnels.live_replicas.send_replace(live_replicas);
        if tunnels.is_wasteful(index, &replica_id) && duplicates < MAX_DUPLICATE_TRIES {
            duplicates += 1;
            drop(task);
            if !pause(backoff.next_delay(), &cancel).await {
                return;
            }
            continue;
        }
        duplicates = 0;
        backoff.reset();
        // Make before break: the drained stream closes only now.
        drop(previous.take());
        tunnels.hold(index, &replica_id, &agent_name);
        let refresh = refresh_delay(config.tunnel_refresh);
        let end = loop {
            tokio::select! {
                event = task.events.recv() => match event {
                    Some(ControlEvent::Peers { live_replicas }) => {
                        tunnels.live_replicas.send_replace(live_replicas);
                        if index >= live_replicas {
                            break SlotEnd::Retire;
                        }
                    }
                    Some(ControlEvent::Drain { reason }) => {
                        info!(replica = %replica_id, %reason, "replica draining: moving this tunnel");
                        break SlotEnd::Move("drain");
                    }
                    Some(ControlEvent::Ended(outcome)) => break SlotEnd::Ended(outcome),
                    Some(ControlEvent::Welcome { .. }) => {}
                    None => break SlotEnd::Ended(Ok(())),
                },
                _ = tokio::time::sleep(refresh) => break SlotEnd::Move("refresh"),
                _ = cancel.cancelled() => {
                    tunnels.release(index);
                    return;
                }
            }
        };
        match end {
            SlotEnd::Retire => {
                drop(task);
                tunnels.release(index);
            }
            SlotEnd::Move(why) => {
                info!(replica = %replica_id, why, "opening a new tunnel before closing this one");
                previous = Some(task);
            }
            SlotEnd::Ended(outcome) => {
                log_end(&config, &outcome);
                tunnels.release(index);
                if !pause(backoff.next_delay(), &cancel).await {
                    return;
                }
            }
        }
    }
}

fn log_end(config: &AgentConfig, outcome: &Result<(), tonic::Status>) {
    match outcome {
        Ok(()) => info!(gateway = %config.gateway_url, "control stream ended"),
        Err(status) => warn!(
            gateway = %config.gateway_url,
            code = ?status.code(),
            "control stream failed: {}",
            status.message()
        ),
    }
}

/// Sleeps unless cancelled first; false if cancelled.
async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

/// The refresh period with ±20% jitter, so a fleet does not move in step.
fn refresh_delay(period: Duration) -> Duration {
    if period.is_zero() {
        return Duration::MAX / 4;
    }
    let millis = period.as_millis() as u64;
    let spread = millis / 5;
    Duration::from_millis(millis - spread + rand::rng().random_range(0..=2 * spread))
}
