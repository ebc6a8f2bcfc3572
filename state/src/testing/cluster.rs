//! [`RedisCluster`]: cluster-enabled [`RedisServer`]s made into one cluster.

use std::time::{Duration, Instant};

use super::RedisServer;

const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// A Redis Cluster of primaries without replicas, each a [`RedisServer`]
/// with the cluster enabled; see the [module documentation](super).
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` nodes, splits the 16384 slots evenly between them,
    /// and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// If a node does not start or the cluster does not form within 30 s.
    pub fn start(primaries: usize) -> Self {
        assert!(primaries > 0, "a cluster needs at least one node");
        let nodes: Vec<RedisServer> = (0..primaries)
            .map(|_| RedisServer::start_node(true, None))
            .collect();
        let setup = |node: &RedisServer, args: &[&str]| {
            node.command::<()>(args)
                .unwrap_or_else(|e| panic!("cluster setup: {args:?} failed: {e}"))
        };
        for (i, node) in nodes.iter().enumerate() {
            let first = (i * 16384 / primaries).to_string();
            let last = ((i + 1) * 16384 / primaries - 1).to_string();
            // Distinct epochs from the start, as redis-cli --cluster create does.
            setup(node, &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
            setup(node, &["CLUSTER", "ADDSLOTSRANGE", &first, &last]);
        }
        for node in &nodes[1..] {
            let port = node.port.to_string();
            let bus_port = node.cluster_bus_port.unwrap_or_default().to_string();
            setup(
                &nodes[0],
                &["CLUSTER", "MEET", "127.0.0.1", &port, &bus_port],
            );
        }
        let cluster = Self { nodes };
        cluster.wait_until_formed();
        cluster
    }

    fn wait_until_formed(&self) {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        let known_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let infos: Vec<String> = self
                .nodes
                .iter()
                .map(|node| node.command(&["CLUSTER", "INFO"]).unwrap_or_default())
                .collect();
            // With `cluster-require-full-coverage no` a node says "ok" before it
            // knows every slot's owner: wait until each one does.
            let formed = infos.iter().all(|info| {
                info.contains("cluster_state:ok")
                    && info.contains(&known_nodes)
                    && info.contains("cluster_slots_ok:16384")
            });
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not form within {CLUSTER_DEADLINE:?}; CLUSTER INFO:\n{}",
                infos.join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...`, for
    /// [`RedisConfig::from_url`](crate::redis::RedisConfig::from_url).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The index in [`nodes`](Self::nodes) of the node that was given `slot`
    /// (the slots are split evenly, in node order).
    pub fn node_of_slot(&self, slot: u16) -> usize {
        (0..self.nodes.len())
            .find(|&i| usize::from(slot) < (i + 1) * 16384 / self.nodes.len())
            .expect("slots are below 16384")
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// To stop and restart single nodes.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }
}
