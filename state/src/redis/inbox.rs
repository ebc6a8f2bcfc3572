//! Replica inboxes over sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7+).
//!
//! Each subscription gets its own RESP3 connection to the node that owns the
//! channel's slot (the only node in single-node mode). The inbox stream owns
//! that connection: it ends when the connection is lost, when Redis drops the
//! subscription (the slot moved to another node) or when a keepalive PING goes
//! unanswered; dropping the stream closes the connection. Nothing resubscribes
//! behind the caller's back, so a gap in delivery is always visible to it.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisError, Value,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::keys;
use crate::Inbox;

/// Where a subscription connects.
#[derive(Clone)]
pub(super) enum InboxNodes {
    Single(ConnectionInfo),
    /// Connection settings of a seed node (credentials, TLS), used with the
    /// address of whichever node owns the channel's slot.
    Cluster {
        seed: ConnectionInfo,
        commands: ClusterConnection,
    },
}

#[derive(Clone, Copy)]
pub(super) struct InboxTimeouts {
    pub(super) connect: Duration,
    pub(super) response: Duration,
    pub(super) keepalive: Duration,
}

/// How often, and how far apart, a slot's owner is looked up before giving up.
const SLOT_OWNER_ATTEMPTS: u32 = 10;
const SLOT_OWNER_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub(super) enum SubscribeError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("no Redis Cluster node owns slot {slot} of inbox channel {channel:?}")]
    NoSlotOwner { slot: u16, channel: String },
}

/// Subscribes to the sharded pub/sub `channel` (a replica's inbox, or the
/// policy-changed channel).
pub(super) async fn subscribe(
    nodes: &InboxNodes,
    timeouts: InboxTimeouts,
    channel: String,
) -> Result<Inbox, SubscribeError> {
    let node = match nodes {
        InboxNodes::Single(info) => info.clone(),
        InboxNodes::Cluster { seed, commands } => {
            let slot = keys::slot(&channel);
            // A node that just joined, or a slot being moved, can leave the
            // slot without a known owner for a moment: ask again briefly.
            let mut owner = None;
            for _ in 0..SLOT_OWNER_ATTEMPTS {
                owner = slot_owner(&mut commands.clone(), slot).await?;
                if owner.is_some() {
                    break;
                }
                tokio::time::sleep(SLOT_OWNER_RETRY).await;
            }
            let (host, port) = owner.ok_or_else(|| SubscribeError::NoSlotOwner {
                slot,
                channel: channel.clone(),
            })?;
            with_address(seed, host, port)
        }
    };
    // RESP3 delivers messages as push frames on an ordinary connection.
    let settings = node
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(node.set_redis_settings(settings))?;
    let (push_sender, pushes) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_push_sender(push_sender);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Returns once the server confirmed the subscription (or refused it, e.g.
    // with MOVED when the slot changed owner since the lookup).
    redis::cmd("SSUBSCRIBE")
        .arg(&channel)
        .exec_async(&mut connection)
        .await?;
    let mut keepalive =
        tokio::time::interval_at(Instant::now() + timeouts.keepalive, timeouts.keepalive);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let subscription = Subscription {
        connection,
        pushes,
        keepalive,
    };
    Ok(Box::pin(futures::stream::unfold(
        subscription,
        |mut subscription| async move {
            let message = subscription.next_message().await?;
            Some((message, subscription))
        },
    )))
}

struct Subscription {
    connection: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    keepalive: Interval,
}

impl Subscription {
    /// The next message, or `None` once the subscription is gone.
    async fn next_message(&mut self) -> Option<Bytes> {
        loop {
            tokio::select! {
                push = self.pushes.recv() => match push? {
                    PushInfo { kind: PushKind::SMessage, data } => {
                        if let Some(message) = message_payload(data) {
                            return Some(message);
                        }
                    }
                    // Connection lost, or the server dropped the subscription
                    // because the channel's slot moved.
                    PushInfo { kind: PushKind::Disconnection | PushKind::SUnsubscribe, .. } => {
                        return None;
                    }
                    _ => {}
                },
                _ = self.keepalive.tick() => {
                    let pong: Result<String, _> =
                        redis::cmd("PING").query_async(&mut self.connection).await;
                    if pong.is_err() {
                        tracing::debug!("inbox connection failed its keepalive");
                        return None;
                    }
                }
            }
        }
    }
}

/// An SMESSAGE push carries `[channel, payload]`.
fn message_payload(data: Vec<Value>) -> Option<Bytes> {
    match data.into_iter().nth(1)? {
        Value::BulkString(payload) => Some(Bytes::from(payload)),
        other => {
            tracing::warn!(?other, "unexpected inbox message payload");
            None
        }
    }
}

fn with_address(seed: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let address = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    seed.clone().set_addr(address)
}

/// The primary serving `slot`, from CLUSTER SLOTS: an array of
/// `[first slot, last slot, [host, port, id, ...], replicas...]`.
async fn slot_owner(
    commands: &mut ClusterConnection,
    slot: u16,
) -> Result<Option<(String, u16)>, RedisError> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let slots = commands
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await?;
    Ok(owner_in_slots_reply(&slots, slot))
}

fn owner_in_slots_reply(reply: &Value, slot: u16) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        if !(*first..=*last).contains(&i64::from(slot)) {
            return None;
        }
        let host = match primary.first()? {
            Value::BulkString(host) => String::from_utf8(host.clone()).ok()?,
            Value::SimpleString(host) => host.clone(),
            _ => return None,
        };
        let Value::Int(port) = primary.get(1)? else {
            return None;
        };
        // An empty or "?" host means the node does not know its own endpoint.
        (!host.is_empty() && host != "?").then_some((host, u16::try_from(*port).ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn finds_the_primary_of_a_slot() {
        let range = |first, last, host: &str, port| {
            Value::Array(vec![
                Value::Int(first),
                Value::Int(last),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "10.0.0.2", 7001),
            range(10923, 16383, "", 7002),
        ]);
        assert_eq!(
            owner_in_slots_reply(&reply, 5461),
            Some(("10.0.0.2".into(), 7001))
        );
        assert_eq!(
            owner_in_slots_reply(&reply, 0),
            Some(("10.0.0.1".into(), 7000))
        );
        assert_eq!(owner_in_slots_reply(&reply, 16383), None);
        assert_eq!(owner_in_slots_reply(&Value::Nil, 1), None);
    }
}
