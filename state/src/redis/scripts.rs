//! Lua scripts for the updates that must be atomic or use the server's clock.
//! Each one names all its keys in KEYS (one hash tag per call), as Redis
//! Cluster requires. They are sent with EVAL: Redis caches the compiled script
//! by its hash, and pruning or announcing is not hot enough to need EVALSHA.

use std::time::Duration;

use redis::Cmd;

use super::keys;

/// KEYS: replica record, replica index. ARGV: record JSON, ttl ms, replica id.
/// The index lives at least as long as the longest-lived record in it.
const ANNOUNCE_REPLICA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
";

/// KEYS: replica record, replica index. ARGV: replica id.
const WITHDRAW_REPLICA: &str = r"
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
";

/// KEYS: replica index, then the records of ARGV's replica ids, in order.
/// Drops ids whose record is gone; checking inside the script means a replica
/// that announced itself again meanwhile is kept.
const PRUNE_REPLICAS: &str = r"
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('SREM', KEYS[1], id)
  end
end
";

// Agent route expiries are in the server's time (unix ms), set and compared
// by the node holding the key, so clock skew between replicas does not matter.

/// KEYS: agent routes. ARGV: replica id, ttl ms.
/// The key lives at least as long as its longest-lived route.
const ANNOUNCE_AGENT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
";

/// KEYS: agent routes. Returns the live replica ids, latest expiry first.
const AGENT_REPLICAS: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
return redis.call('ZREVRANGE', KEYS[1], 0, -1)
";

fn eval(script: &str, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}

/// Milliseconds for PX/PEXPIRE, which reject 0: a zero ttl expires at once.
pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(super) fn announce_replica(id: &str, record_json: &str, ttl: Duration) -> Cmd {
    let record = keys::replica(id);
    let mut cmd = eval(ANNOUNCE_REPLICA, &[&record, keys::REPLICA_INDEX]);
    cmd.arg(record_json).arg(ttl_ms(ttl)).arg(id);
    cmd
}

pub(super) fn withdraw_replica(id: &str) -> Cmd {
    let record = keys::replica(id);
    let mut cmd = eval(WITHDRAW_REPLICA, &[&record, keys::REPLICA_INDEX]);
    cmd.arg(id);
    cmd
}

pub(super) fn prune_replicas(ids: &[&str]) -> Cmd {
    let records: Vec<String> = ids.iter().map(|id| keys::replica(id)).collect();
    let mut keys: Vec<&str> = vec![keys::REPLICA_INDEX];
    keys.extend(records.iter().map(String::as_str));
    let mut cmd = eval(PRUNE_REPLICAS, &keys);
    cmd.arg(ids);
    cmd
}

pub(super) fn announce_agent(agent: &str, replica: &str, ttl: Duration) -> Cmd {
    let mut cmd = eval(ANNOUNCE_AGENT, &[&keys::agent(agent)]);
    cmd.arg(replica).arg(ttl_ms(ttl));
    cmd
}

pub(super) fn agent_replicas(agent: &str) -> Cmd {
    eval(AGENT_REPLICAS, &[&keys::agent(agent)])
}
