//! Which replica to ask for an agent: a pure function over a snapshot of the
//! live replicas, plus the snapshot itself ([`ClusterView`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use postern_state::ReplicaInfo;

/// How long a peer that failed a call is tried only after every other one.
pub const PEER_FAILURE_MEMORY: Duration = Duration::from_secs(5);

pub type Replicas = Arc<HashMap<String, ReplicaInfo>>;

/// Replicas to ask, in order, to pass a session request to `agent`'s tunnel,
/// given the replicas the route store says hold it (freshest first).
///
/// Only live replicas other than this one qualify. Healthy ones come first,
/// then draining ones (their agents are moving but still reachable), then
/// ones that failed a call a moment ago; the route store's order is kept
/// within each group.
pub fn holder_candidates(
    this_replica: &str,
    agent_routes: &[String],
    replicas: &HashMap<String, ReplicaInfo>,
    recently_failed: &HashSet<String>,
) -> Vec<ReplicaInfo> {
    let mut candidates: Vec<(u8, usize, &ReplicaInfo)> = agent_routes
        .iter()
        .enumerate()
        .filter(|(_, id)| id.as_str() != this_replica)
        .filter_map(|(order, id)| replicas.get(id).map(|info| (order, info)))
        .map(|(order, info)| {
            let rank = match (recently_failed.contains(&info.id), info.draining) {
                (false, false) => 0,
                (false, true) => 1,
                (true, _) => 2,
            };
            (rank, order, info)
        })
        .collect();
    candidates.sort_by_key(|(rank, order, _)| (*rank, *order));
    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .filter(|(_, _, info)| seen.insert(info.id.clone()))
        .map(|(_, _, info)| info.clone())
        .collect()
}

/// This replica's picture of the others, refreshed by the heartbeat.
#[derive(Default)]
pub struct ClusterView {
    replicas: RwLock<Replicas>,
    failed: Mutex<HashMap<String, Instant>>,
}

impl ClusterView {
    pub fn snapshot(&self) -> Replicas {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the snapshot; true if the set of live replicas changed.
    pub fn update(&self, replicas: Vec<ReplicaInfo>) -> bool {
        let next: HashMap<String, ReplicaInfo> =
            replicas.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut current = self.replicas.write().unwrap_or_else(|e| e.into_inner());
        let changed =
            current.len() != next.len() || next.keys().any(|id| !current.contains_key(id));
        *current = Arc::new(next);
        changed
    }

    pub fn get(&self, replica: &str) -> Option<ReplicaInfo> {
        self.snapshot().get(replica).cloned()
    }

    /// Live replica ids, sorted, for telling agents.
    pub fn live_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snapshot().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn mark_failed(&self, replica: &str) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(replica.to_owned(), Instant::now());
    }

    pub fn recently_failed(&self) -> HashSet<String> {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, at| at.elapsed() < PEER_FAILURE_MEMORY);
        failed.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, draining: bool) -> ReplicaInfo {
        ReplicaInfo {
            id: id.into(),
            peer_addr: format!("{id}:8444"),
            peer_cert_sha256: String::new(),
            draining,
            started_at_ms: 0,
        }
    }

    #[test]
    fn holder_candidates_table() {
        struct Case {
            name: &'static str,
            routes: &'static [&'static str],
            live: &'static [(&'static str, bool)],
            failed: &'static [&'static str],
            expected: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "no routes",
                routes: &[],
                live: &[("b", false)],
                failed: &[],
                expected: &[],
            },
            Case {
                name: "freshest first",
                routes: &["c", "b"],
                live: &[("b", false), ("c", false)],
                failed: &[],
                expected: &["c", "b"],
            },
            Case {
                name: "this replica is never a peer",
                routes: &["a", "b"],
                live: &[("a", false), ("b", false)],
                failed: &[],
                expected: &["b"],
            },
            Case {
                name: "a dead replica's leftover route is ignored",
                routes: &["gone", "b"],
                live: &[("b", false)],
                failed: &[],
                expected: &["b"],
            },
            Case {
                name: "draining after healthy",
                routes: &["b", "c"],
                live: &[("b", true), ("c", false)],
                failed: &[],
                expected: &["c", "b"],
            },
            Case {
                name: "recently failed last, even behind draining",
                routes: &["b", "c", "d"],
                live: &[("b", false), ("c", true), ("d", false)],
                failed: &["b"],
                expected: &["d", "c", "b"],
            },
            Case {
                name: "duplicates collapse",
                routes: &["b", "b"],
                live: &[("b", false)],
                failed: &[],
                expected: &["b"],
            },
        ];
        for case in cases {
            let live: HashMap<String, ReplicaInfo> = case
                .live
                .iter()
                .map(|(id, draining)| (id.to_string(), replica(id, *draining)))
                .collect();
            let routes: Vec<String> = case.routes.iter().map(|s| s.to_string()).collect();
            let failed: HashSet<String> = case.failed.iter().map(|s| s.to_string()).collect();
            let got: Vec<String> = holder_candidates("a", &routes, &live, &failed)
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn cluster_view_reports_membership_changes_only() {
        let view = ClusterView::default();
        assert!(view.update(vec![replica("a", false), replica("b", false)]));
        assert!(!view.update(vec![replica("b", true), replica("a", false)]));
        assert!(view.get("b").unwrap().draining);
        assert!(view.update(vec![replica("a", false)]));
        assert_eq!(view.live_ids(), ["a"]);
        view.mark_failed("b");
        assert!(view.recently_failed().contains("b"));
    }
}
