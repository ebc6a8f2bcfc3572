use super::*;

#[test]
fn exposition_names_every_documented_metric() {
    let metrics = Metrics::new();
    metrics.error(ErrorKind::AgentOffline);
    metrics.session_ended("ok");
    metrics.bytes_up.inc_by(5);
    metrics.splice(SplicePath::Peer);
    metrics.route_lookup(false);
    metrics.route_store_error("announce_replica");
    metrics.policy_cache_lookup("stale");
    metrics.policy_cache_refresh_failure();
    metrics.policy_cache_invalidation("poll");
    let text = metrics.encode();
    for name in [
        "postern_sessions_open",
        "postern_sessions_total{outcome=\"ok\"} 1",
        "postern_session_bytes_total{direction=\"up\"} 5",
        "postern_agents_connected",
        "postern_errors_total{kind=\"agent_offline\"} 1",
        "postern_session_open_seconds_bucket",
        "postern_splices_total{path=\"peer\"} 1",
        "postern_route_lookups_total{result=\"miss\"} 1",
        "postern_route_store_errors_total{operation=\"announce_replica\"} 1",
        "postern_replicas_live",
        "postern_policy_cache_lookups_total{result=\"stale\"} 1",
        "postern_policy_cache_refresh_failures_total 1",
        "postern_policy_cache_invalidations_total{source=\"poll\"} 1",
        "postern_policy_cache_state 2",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn every_listed_label_value_is_exported_before_its_first_event() {
    let text = Metrics::new().encode();
    for line in [
        "postern_sessions_total{outcome=\"error\"} 0",
        "postern_errors_total{kind=\"identity_unavailable\"} 0",
        "postern_splices_total{path=\"relay\"} 0",
        "postern_route_store_errors_total{operation=\"subscribe\"} 0",
        "postern_relay_resets_total{reason=\"stopping\"} 0",
        "postern_statements_total{outcome=\"unknown\"} 0",
        "postern_review_webhook_deliveries_total{result=\"failed\"} 0",
        "postern_policy_cache_invalidations_total{source=\"announced\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn error_kinds_have_distinct_names() {
    let mut names: Vec<&str> = ErrorKind::ALL.map(ErrorKind::as_str).to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ErrorKind::ALL.len());
}
