//! The agent's Postgres engine on a loopback port, without a gateway: each
//! accepted connection gets a pair of frame streams, one spliced to the
//! socket as the gateway and CLI would, the other run by `pg::serve`. Audit
//! frames the engine sends are collected.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use postern_agent::AgentConfig;
use postern_agent::pg;
use postern_tunnel::proto::{Frame, PostgresSession, SessionRequest, StatementAudit, frame::Kind};
use postern_tunnel::stream::outgoing_channel;
use postern_tunnel::{FrameStream, Secret};
use tokio::net::TcpListener;

pub struct Engine {
    pub port: u16,
    audits: Arc<Mutex<Vec<StatementAudit>>>,
    pub config: AgentConfig,
}

/// An agent config with one login, `env:APP`.
pub fn config_with_login(user: &str, password: Option<&str>) -> AgentConfig {
    let mut config = AgentConfig::new("http://unused.invalid", Secret::new("t".to_owned()));
    config.credentials.insert("APP", user, password);
    config
}

pub fn settings(policy_json: &str) -> PostgresSession {
    PostgresSession {
        database: String::new(),
        credential: "env:APP".into(),
        tls: "disable".into(),
        policy_json: policy_json.into(),
    }
}

impl Engine {
    /// The usual case: `db` on the shared server with `policy_json`, logged
    /// in as `postgres`, for alice.
    pub async fn for_database(
        db: &postern_testkit::postgres::Database,
        policy_json: &str,
    ) -> Engine {
        Engine::start(
            db.addr(),
            settings(policy_json),
            config_with_login("postgres", None),
            "alice",
        )
        .await
    }

    /// Serves `target` as `person` with `settings`; the login comes from `config`.
    pub async fn start(
        target: String,
        settings: PostgresSession,
        config: AgentConfig,
        person: &str,
    ) -> Engine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let audits = Arc::new(Mutex::new(Vec::new()));
        let request = SessionRequest {
            session_id: "test-session".into(),
            connection: "pg".into(),
            kind: "postgres".into(),
            target,
            user: person.into(),
            ingress_replica: "test".into(),
            postgres: Some(settings.clone()),
            traceparent: String::new(),
        };
        let (engine_config, engine_audits) = (config.clone(), audits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (to_engine, from_user) = outgoing_channel();
                let (to_user, from_engine) = outgoing_channel();
                let audits = engine_audits.clone();
                let from_engine = from_engine.filter_map(move |frame: Frame| {
                    let frame = match frame.kind {
                        Some(Kind::Audit(audit)) => {
                            audits.lock().unwrap().push(audit);
                            None
                        }
                        _ => Some(Ok::<_, tonic::Status>(frame)),
                    };
                    futures::future::ready(frame)
                });
                let mut user_side = FrameStream::new(Box::pin(from_engine), to_engine, None);
                let engine_side = FrameStream::new(from_user.map(Ok), to_user, None);
                tokio::spawn(async move {
                    let _ = user_side.splice_tcp(&mut socket).await;
                });
                let (config, request) = (engine_config.clone(), request.clone());
                tokio::spawn(async move {
                    let plan = match pg::Plan::new(request.postgres.as_ref(), &config) {
                        Ok(plan) => plan,
                        Err(e) => panic!("plan: {e}"),
                    };
                    let server = pg::connect(&request.target, &plan, &config)
                        .await
                        .expect("the database is reachable");
                    pg::serve(engine_side, server, plan, &request, &config).await;
                });
            }
        });
        Engine {
            port,
            audits,
            config,
        }
    }

    /// The audit events so far, once at least `count` arrived (10 s at most).
    pub async fn audits(&self, count: usize) -> Vec<StatementAudit> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let audits = self.audits.lock().unwrap().clone();
            if audits.len() >= count || tokio::time::Instant::now() > deadline {
                return audits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn clear_audits(&self) {
        self.audits.lock().unwrap().clear();
    }

    /// psql through the engine as `user` (any name: the engine logs in
    /// itself) on `database`; returns (status ok, stdout, stderr).
    pub async fn psql(&self, database: &str, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new("psql")
            .args(["-X", "-At", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "alice", "-d", database])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .output()
            .await
            .expect("psql is installed (scripts/test installs it)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A tokio-postgres client through the engine.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=alice dbname={database} connect_timeout=10",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("tokio-postgres connects through the engine");
        tokio::spawn(connection);
        client
    }
}
