//! Throwaway servers for tests (feature `test-support`): [`MotoServer`] runs
//! moto's DynamoDB-API server; [`RedisServer`] runs one
//! `redis-server` on a free loopback port, [`RedisCluster`] a Redis Cluster of
//! such servers. Each server has a private temporary directory, persists
//! nothing and is killed when dropped.
//!
//! The binary is `$POSTERN_TEST_REDIS_SERVER` if set, else `redis-server` from
//! `PATH`; it must be Redis 7 or later. Without it, starting a server panics
//! with a message saying what to install: tests that need Redis fail, never skip.
//!
//! ```no_run
//! use postern_state::testing::{RedisCluster, RedisServer};
//!
//! let mut redis = RedisServer::start();
//! let url = redis.url(); // redis://127.0.0.1:<port>
//! redis.stop(); // an outage...
//! redis.restart(); // ...over: same port, empty data
//!
//! let cluster = RedisCluster::start(3);
//! let url = cluster.url(); // redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...
//! ```
//!
//! Starting and stopping block the calling thread (for well under a second for
//! a server, a few seconds for a cluster).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ::redis::{FromRedisValue, RedisResult};

mod cluster;
mod moto;
pub use cluster::RedisCluster;
pub use moto::{MOTO_SERVER_ENV, MotoServer};

/// Names a `redis-server` binary to use instead of the one on `PATH`.
pub const REDIS_SERVER_ENV: &str = "POSTERN_TEST_REDIS_SERVER";

const START_DEADLINE: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 20;

/// One `redis-server` process on 127.0.0.1; see the [module documentation](self).
pub struct RedisServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Set for a cluster node: the port of its cluster bus.
    cluster_bus_port: Option<u16>,
    /// Set for a server that also listens with TLS: its files and TLS port.
    tls: Option<(RedisTls, u16)>,
    process: Option<Child>,
}

/// PEM files for a Redis that also speaks TLS ([`RedisServer::start_tls`]).
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Redis insists on a CA file even when it does not ask clients for certificates.
    pub ca: PathBuf,
}

enum SpawnError {
    /// Another process took one of the ports between our probe and the bind.
    PortTaken,
    Failed(String),
}

impl RedisServer {
    /// Starts a single Redis on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// If `redis-server` is missing, too old or does not start.
    pub fn start() -> Self {
        Self::start_node(false, None)
    }

    /// Starts a single Redis that serves TLS on [`tls_port`](Self::tls_port)
    /// (clients are not asked for certificates) besides plain TCP on
    /// [`port`](Self::port), which readiness checks and [`command`](Self::command) use.
    pub fn start_tls(tls: RedisTls) -> Self {
        Self::start_node(false, Some(tls))
    }

    fn start_node(cluster: bool, tls: Option<RedisTls>) -> Self {
        let binary = redis_server_binary();
        let dir = tempfile::Builder::new()
            .prefix("postern-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut server = Self {
            binary,
            dir,
            port: 0,
            cluster_bus_port: None,
            tls: None,
            process: None,
        };
        for _ in 0..PORT_ATTEMPTS {
            let ports = free_ports(if cluster || tls.is_some() { 2 } else { 1 });
            server.port = ports[0];
            match &tls {
                Some(files) => server.tls = Some((files.clone(), ports[1])),
                None => server.cluster_bus_port = ports.get(1).copied(),
            }
            match server.spawn() {
                Ok(()) => return server,
                Err(SpawnError::PortTaken) => continue,
                Err(SpawnError::Failed(why)) => panic!("redis-server did not start: {why}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, for [`RedisConfig::from_url`](crate::redis::RedisConfig::from_url).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port of a server started with [`start_tls`](Self::start_tls).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(_, port)| *port)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server (SIGKILL, like a crash); a no-op if it is stopped.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing
    /// answers, like a hung server or a network black hole.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`freeze`](Self::freeze) (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let process = self.process.as_ref().expect("redis-server is not running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(process.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} redis-server failed");
    }

    /// Starts the server again on the same port, after a [`stop`](Self::stop)
    /// (stopping it first if needed). Data is gone; a cluster node keeps its
    /// identity and slots from its config file.
    ///
    /// # Panics
    /// If the port stays taken by another process for several seconds.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(SpawnError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(SpawnError::PortTaken) => panic!(
                    "cannot restart redis-server: port {} or its bus port stays taken",
                    self.port
                ),
                Err(SpawnError::Failed(why)) => panic!("redis-server did not restart: {why}"),
            }
        }
    }

    /// Runs one command, e.g. `server.command::<i64>(&["DBSIZE"])`.
    pub fn command<T: FromRedisValue>(&self, args: &[&str]) -> RedisResult<T> {
        let mut connection = ::redis::Client::open(self.url())?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut cmd = ::redis::Cmd::new();
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
    }

    fn spawn(&mut self) -> Result<(), SpawnError> {
        let dir = self.dir.path();
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("redis.out"))
            .map_err(|e| SpawnError::Failed(format!("cannot create redis.out: {e}")))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if let Some((tls, port)) = &self.tls {
            command
                .args(["--tls-port", &port.to_string(), "--tls-cert-file"])
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]);
        }
        if let Some(bus_port) = self.cluster_bus_port {
            command
                .args(["--cluster-enabled", "yes", "--cluster-port"])
                .arg(bus_port.to_string())
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000"])
                // A stopped node takes only its own slots down, as in a partial outage.
                .args(["--cluster-require-full-coverage", "no"]);
        }
        let stderr = output
            .try_clone()
            .map_err(|e| SpawnError::Failed(e.to_string()))?;
        let process = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                SpawnError::Failed(format!("cannot run {}: {e}", self.binary.display()))
            })?;
        self.process = Some(process);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), SpawnError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let Some(process) = self.process.as_mut() else {
                return Err(SpawnError::Failed("not started".into()));
            };
            let pid = process.id();
            if let Ok(Some(status)) = process.try_wait() {
                self.process = None;
                let log = self.log_tail();
                return Err(if log.contains("Address already in use") {
                    SpawnError::PortTaken
                } else {
                    SpawnError::Failed(format!("it exited ({status}); its log ends:\n{log}"))
                });
            }
            if answers_ping(self.port) {
                return if self.answering_process() == Some(pid) {
                    Ok(())
                } else {
                    // Someone else's server holds the port; ours will fail to bind.
                    self.stop();
                    Err(SpawnError::PortTaken)
                };
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(SpawnError::Failed(format!(
                    "no PING answer on port {} within {START_DEADLINE:?}; its log ends:\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answering_process(&self) -> Option<u32> {
        let info: String = self.command(&["INFO", "server"]).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    fn log_tail(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        let text = [read("redis.out"), read("redis.log")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_server_binary() -> PathBuf {
    let binary = match std::env::var_os(REDIS_SERVER_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{REDIS_SERVER_ENV}={} is not a file: point it at a redis-server binary",
                path.display()
            );
            path
        }
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "redis-server is not installed (not on PATH, and {REDIS_SERVER_ENV} is not set), \
                     but these tests run real Redis servers: install Redis 7 or later \
                     (Debian/Ubuntu: apt-get install redis-server; scripts/test does it) \
                     or set {REDIS_SERVER_ENV} to a redis-server binary"
                )
            }),
    };
    check_version(&binary);
    binary
}

/// Sharded pub/sub and CLUSTER ADDSLOTSRANGE need Redis 7.
fn check_version(binary: &Path) {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", binary.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    // "Redis server v=7.0.15 sha=..."
    let major = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .and_then(|version| version.split('.').next()?.parse::<u32>().ok());
    match major {
        Some(major) if major >= 7 => {}
        _ => panic!(
            "{} is not Redis 7 or later ({}): the Redis route store needs sharded pub/sub",
            binary.display(),
            text.trim()
        ),
    }
}

/// A loopback port the kernel considers free right now, for a program that
/// must be told its port before it starts.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Ports the kernel considers free right now (distinct: all bound at once).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn answers_ping(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
