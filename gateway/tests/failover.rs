//! Replicas as real processes on a real Redis: a replica killed with SIGKILL
//! under load, a rolling restart with SIGTERM under load (peer links and relay
//! mode), and a Redis outage.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::echo_session;
use support::processes::ProcessCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AGENTS: usize = 3;

/// Agents `agent-i` with an echo connection `echo-i` each, all through the
/// balancer with two tunnels, on two different replicas.
async fn agents(cluster: &ProcessCluster) -> Vec<postern_agent::AgentHandle> {
    let echo = postern_testkit::echo_server().await;
    let mut handles = Vec::new();
    for i in 0..AGENTS {
        let token = cluster.add_agent(&format!("agent-{i}")).await;
        cluster
            .add_connection(
                &format!("echo-{i}"),
                &echo.to_string(),
                &format!("agent-{i}"),
            )
            .await;
        handles.push(cluster.spawn_agent(cluster.balancer_url(), token, 2));
    }
    for agent in &handles {
        agent
            .wait_replicas(2, Duration::from_secs(15))
            .await
            .expect("every agent holds tunnels to two replicas");
    }
    handles
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<support::SessionPath, String>>>>,
}

/// Users on each of `urls` open sessions to every agent, one after another,
/// until stopped; every outcome is kept.
fn start_load(cluster: &ProcessCluster, urls: Vec<String>) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (u, url) in urls.into_iter().enumerate() {
        for agent in 0..AGENTS {
            let stop = stop.clone();
            let url = url.clone();
            let ca = cluster.ca_pem.clone();
            let token = cluster.user_token.clone();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut seed = (u * 100 + agent) as u64;
                while !stop.load(Ordering::Relaxed) {
                    seed += 1000;
                    let outcome = echo_session(
                        &url,
                        &ca,
                        &token,
                        &format!("echo-{agent}"),
                        128 * 1024,
                        seed,
                    )
                    .await;
                    outcomes.push(outcome);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            }));
        }
    }
    Load { stop, tasks }
}

impl Load {
    async fn finish(self) -> Vec<Result<support::SessionPath, String>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_costs_only_its_own_sessions() {
    let mut cluster = ProcessCluster::start(3).await;
    let agents = agents(&cluster).await;
    let doomed = cluster.gateway(1).replica.clone();
    let survivors = [0usize, 2];
    let load = start_load(
        &cluster,
        survivors.iter().map(|i| cluster.url(*i)).collect(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.kill(1).await;
    let killed_at = Instant::now();
    // Until every agent answers through every surviving replica.
    let mut recovered = None;
    while recovered.is_none() {
        let mut all_ok = true;
        for user_on in survivors {
            for agent in 0..AGENTS {
                let probe = echo_session(
                    &cluster.url(user_on),
                    &cluster.ca_pem,
                    &cluster.user_token,
                    &format!("echo-{agent}"),
                    1024,
                    7,
                )
                .await;
                all_ok &= probe.is_ok();
            }
        }
        if all_ok {
            recovered = Some(killed_at.elapsed());
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no recovery within 15 s"
        );
    }
    let recovered = recovered.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;

    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let unrelated: Vec<&&String> = failures.iter().filter(|e| !e.contains(&doomed)).collect();
    assert!(
        unrelated.is_empty(),
        "sessions that never touched the killed replica {doomed} failed: {unrelated:#?}"
    );
    assert!(outcomes.len() > 50, "load ran: {} sessions", outcomes.len());
    assert!(
        recovered <= Duration::from_secs(2),
        "every agent reachable again only after {recovered:?}"
    );
    // From here on, every new session works.
    for user_on in survivors {
        for agent in 0..AGENTS {
            echo_session(
                &cluster.url(user_on),
                &cluster.ca_pem,
                &cluster.user_token,
                &format!("echo-{agent}"),
                64 * 1024,
                9,
            )
            .await
            .unwrap();
        }
    }
    eprintln!(
        "kill -9: {} sessions, {} failed (all through {doomed}), every agent reachable after {recovered:?}",
        outcomes.len(),
        failures.len()
    );
    for agent in agents {
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_session() {
    rolling_restart_under_load(ProcessCluster::start(3).await).await;
}

/// The same in relay mode: replicas never dial each other; sessions that
/// cross replicas are relayed through Redis, and draining waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_in_relay_mode_fails_no_session() {
    let outcomes = rolling_restart_under_load(ProcessCluster::start_relay(3).await).await;
    let relayed = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|path| path.ingress != path.via)
        .count();
    assert!(
        relayed > 10,
        "sessions crossed replicas through the relay: {relayed}"
    );
}

async fn rolling_restart_under_load(
    mut cluster: ProcessCluster,
) -> Vec<Result<support::SessionPath, String>> {
    let agents = agents(&cluster).await;
    // Users reach the replicas through the balancer, as through an ALB.
    let load = start_load(
        &cluster,
        vec![cluster.balancer_url(), cluster.balancer_url()],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for old in 0..3 {
        let new = cluster.add_replica().await;
        assert!(!cluster.gateway(new).replica.is_empty());
        let code = cluster.terminate(old).await;
        assert_eq!(
            code,
            Some(0),
            "replica {old} exits 0 after draining:\n{}",
            cluster.log(old)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} sessions failed during the rolling restart: {failures:#?}",
        failures.len(),
        outcomes.len()
    );
    assert!(outcomes.len() > 50, "load ran: {} sessions", outcomes.len());
    for agent in agents {
        agent.stop().await;
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_keeps_sessions_and_routing_recovers() {
    let mut cluster = ProcessCluster::start(2).await;
    let echo = postern_testkit::echo_server().await;
    let token = cluster.add_agent("held").await;
    cluster
        .add_connection("echo", &echo.to_string(), "held")
        .await;
    // One tunnel, straight to replica 0: users on replica 1 need the peer link.
    let agent = cluster.spawn_agent(cluster.url(0), token, 1);
    agent.wait_connected(Duration::from_secs(10)).await.unwrap();
    let urls = [cluster.url(0), cluster.url(1)];
    let (ca, user) = (cluster.ca_pem.clone(), cluster.user_token.clone());
    let session = |user_on: usize| {
        let (url, ca, user) = (urls[user_on].clone(), ca.clone(), user.clone());
        async move { echo_session(&url, &ca, &user, "echo", 4096, 3).await }
    };
    session(1)
        .await
        .expect("peer-spliced session before the outage");

    // Two sessions stay open across the outage: one local, one spliced.
    let mut open = Vec::new();
    for user_on in [0, 1] {
        let (mut stream, path) = support::open_stream(
            &cluster.url(user_on),
            &cluster.ca_pem,
            &cluster.user_token,
            "echo",
        )
        .await
        .unwrap();
        assert_eq!(path.via, cluster.gateway(0).replica);
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        open.push(stream);
    }

    cluster.redis.stop();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        for stream in &mut open {
            stream.write_all(b"tick").await.unwrap();
            let mut buf = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
                .await
                .expect("in-flight session keeps answering while Redis is down")
                .unwrap();
            assert_eq!(&buf, b"tick");
        }
        // The replica holding the agent still opens sessions to it.
        session(0).await.expect("local session while Redis is down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cluster.redis.restart();
    let back = Instant::now();
    // Routes come back (re-published into an empty Redis) with no restart.
    loop {
        match session(1).await {
            Ok(path) => {
                assert_eq!(path.via, cluster.gateway(0).replica);
                break;
            }
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(10),
                "routing did not recover within 10 s of Redis returning: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "routing recovered {:?} after Redis returned",
        back.elapsed()
    );
    for mut stream in open {
        stream.write_all(b"last").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        stream.shutdown().await.unwrap();
    }
    agent.stop().await;
}

/// A listener whose accept queue is full: connecting to it hangs, like a
/// target behind a firewall that drops packets.
async fn hanging_target() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connect to the hanging target: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (listener, queued, addr.to_string())
}

/// The replica that passed a request on is killed before the agent attaches
/// (it can tell no one): the user hears within about a replica TTL, with a
/// retryable refusal naming it, instead of waiting out the attach timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_killed_before_the_agent_attaches_fails_the_open_quickly() {
    let mut cluster = ProcessCluster::start(2).await;
    let (_listener, _queued, target) = hanging_target().await;
    let token = cluster.add_agent("slow").await;
    cluster.add_connection("slow-db", &target, "slow").await;
    let agent = cluster.spawn_agent(cluster.url(1), token, 1);
    let holder = cluster.gateway(1).replica.clone();
    assert_eq!(
        agent.wait_connected(Duration::from_secs(10)).await,
        Some(holder.clone())
    );
    let routes = postern_state::redis::RedisRouteStore::connect_url(&cluster.redis.url())
        .await
        .unwrap();
    postern_testkit::wait_for(|| async {
        use postern_state::RouteStore;
        let held = routes.agent_replicas("slow").await.unwrap_or_default();
        held.contains(&holder).then_some(())
    })
    .await;
    let url = cluster.url(0);
    let (ca, user) = (cluster.ca_pem.clone(), cluster.user_token.clone());
    let open = tokio::spawn(async move {
        support::open_stream(&url, &ca, &user, "slow-db")
            .await
            .map(|_| ())
    });
    // The agent is dialing a target that never answers; then its replica dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    cluster.kill(1).await;
    let error = open.await.unwrap().expect_err("the open fails");
    let waited = killed.elapsed();
    // Replica TTL 1 s and heartbeats every 200 ms here; the attach timeout is 5 s.
    assert!(
        waited < Duration::from_secs(3),
        "failed only after {waited:?}: {error}"
    );
    // The client retried the retryable refusal; by then the agent, whose only
    // tunnel was on the dead replica, was offline.
    assert!(error.contains("offline"), "{error}");
    let log = cluster.log(0);
    assert!(
        log.contains(&format!("replica {holder}, which passed the request")),
        "the ingress refused the first attempt once the holder was gone:\n{log}"
    );
    agent.stop().await;
}
