//! Key and channel names. Every multi-key command touches keys of one hash tag
//! (`{...}`), so it stays within one slot in Redis Cluster.

/// The set of replica ids that have (or recently had) a record; it shares the
/// `{replicas}` tag with every replica record so the index and the records can
/// be read and pruned together.
pub(super) const REPLICA_INDEX: &str = "postern:{replicas}:ids";

pub(super) fn replica(id: &str) -> String {
    format!("postern:{{replicas}}:replica:{id}")
}

/// Sorted set: replica id -> expiry (Redis server time, unix ms).
pub(super) fn agent(agent: &str) -> String {
    format!("postern:agent:{{{agent}}}")
}

pub(super) fn session(session_id: &str) -> String {
    format!("postern:session:{{{session_id}}}")
}

/// Sharded pub/sub channel of one replica's inbox.
pub(super) fn inbox(replica: &str) -> String {
    format!("postern:inbox:{{{replica}}}")
}

/// Sharded pub/sub channel every replica listens on for policy changes.
pub(super) const POLICY_CHANGED: &str = "postern:policy-changed:{policy}";

pub(super) const CLUSTER_SLOTS: u16 = 16384;

/// The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag, or of the whole
/// key when it has none), as in the Redis Cluster specification.
pub(super) fn slot(key: &str) -> u16 {
    crc16_xmodem(hash_tag(key.as_bytes())) % CLUSTER_SLOTS
}

/// The part between the first `{` and the next `}`, when it is not empty.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // Check value of CRC16/XMODEM, and slots given by the specification.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(slot("123456789"), 0x31c3 % CLUSTER_SLOTS);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(
            slot("foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS
        );
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }

    #[test]
    fn slots_agree_with_redis_cluster() {
        let cluster = crate::testing::RedisCluster::start(1);
        let node = &cluster.nodes()[0];
        for key in [
            inbox("r1"),
            inbox("{}"),
            inbox(""),
            agent("a}b"),
            replica("x"),
        ] {
            let expected: u16 = node.command(&["CLUSTER", "KEYSLOT", &key]).unwrap();
            assert_eq!(slot(&key), expected, "slot of {key:?}");
        }
    }

    #[test]
    fn related_keys_share_a_slot() {
        assert_eq!(slot(REPLICA_INDEX), slot(&replica("r1")));
        assert_eq!(slot(&replica("r1")), slot(&replica("r2{x}")));
        assert_eq!(slot(&agent("a1")), slot("a1"));
        assert_eq!(slot(&inbox("r1")), slot("r1"));
    }
}
