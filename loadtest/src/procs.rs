//! Starting what the benchmark measures: the real release binaries of Postern,
//! and a throwaway OpenSSH server with an `ssh -L` forward.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until something listens on `addr` (IPv4), read from `/proc/net/tcp`
/// without connecting: for relays where a probe connection would travel on
/// and open a session that a later measurement would count.
pub async fn wait_for_listener(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        bail!("{what}: {addr} is not IPv4");
    };
    // /proc/net/tcp prints the address (network byte order) as a u32 in hex.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(ip.octets()),
        addr.port()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
        let listening = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        });
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads a child's stdout until a line starts with `prefix`; returns the rest.
pub async fn line_after(child: &mut Child, prefix: &str, what: &str) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok::<_, std::io::Error>(Some(rest.to_owned()));
            }
        }
        Ok(None)
    })
    .await
    .with_context(|| format!("{what} printed no {prefix:?} within 30 s"))??
    .with_context(|| format!("{what} exited before printing {prefix:?}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

pub struct Postern {
    _gateway: Child,
    _connect: Child,
    pub local: SocketAddr,
    /// The gateway's internal port (metrics).
    pub internal: Option<SocketAddr>,
}

impl Postern {
    /// `postern connect` and the gateway with its embedded agent.
    pub fn relay_pids(&self) -> Vec<u32> {
        [&self._connect, &self._gateway]
            .iter()
            .filter_map(|c| c.id())
            .collect()
    }
}

/// `postern-gateway dev` (TLS, embedded agent), a connection to `target`
/// (`kind`: the `postern connection add` flags that say what it is), and
/// `postern connect` on a free local port: the walkthrough of the README.
pub async fn postern(
    bin_dir: &Path,
    dir: &Path,
    target: SocketAddr,
    kind: &[&str],
) -> anyhow::Result<Postern> {
    let gateway_bin = bin_dir.join("postern-gateway");
    let cli_bin = bin_dir.join("postern");
    for bin in [&gateway_bin, &cli_bin] {
        if !bin.exists() {
            bail!(
                "{} not found: build with `cargo build --release` or pass --bin-dir",
                bin.display()
            );
        }
    }
    let data = dir.join("gateway");
    let mut gateway = Command::new(&gateway_bin)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--internal",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting postern-gateway")?;
    let url = line_after(
        &mut gateway,
        "Postern dev gateway is up: ",
        "postern-gateway dev",
    )
    .await?;
    // "URL  (metrics: http://ADDR/metrics)"
    let internal = url
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok());
    let url = url
        .split_whitespace()
        .next()
        .context("gateway URL")?
        .to_owned();
    let token = std::fs::read_to_string(data.join("admin-token"))?;
    let env: Vec<(&str, PathBuf)> = vec![
        ("POSTERN_CONFIG", dir.join("cli.json")),
        ("POSTERN_GATEWAY_URL", PathBuf::from(&url)),
        ("POSTERN_TOKEN", PathBuf::from(token.trim())),
        ("POSTERN_CA_CERT", data.join("tls").join("ca.pem")),
    ];
    let added = Command::new(&cli_bin)
        .args(["connection", "add", "bench"])
        .args(kind)
        .args(["--agent", "local", "--target"])
        .arg(target.to_string())
        .envs(env.clone())
        .output()
        .await?;
    if !added.status.success() {
        bail!(
            "postern connection add failed: {}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let mut connect = Command::new(&cli_bin)
        .args(["connect", "bench", "--port", "0"])
        .envs(env)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let local: SocketAddr = line_after(&mut connect, "listening on ", "postern connect")
        .await?
        .parse()?;
    Ok(Postern {
        _gateway: gateway,
        _connect: connect,
        local,
        internal,
    })
}

pub struct SshTunnel {
    _sshd: Child,
    _ssh: Child,
    pub local: SocketAddr,
}

impl SshTunnel {
    /// `ssh` and `sshd` (whose per-connection process is its child).
    pub fn relay_pids(&self) -> Vec<u32> {
        [&self._ssh, &self._sshd]
            .iter()
            .filter_map(|c| c.id())
            .collect()
    }
}

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// An OpenSSH server on a loopback port with throwaway keys, and `ssh -N -L`
/// forwarding a local port to `target` through it.
pub async fn ssh_tunnel(dir: &Path, target: SocketAddr) -> anyhow::Result<SshTunnel> {
    let sshd_bin = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context(
            "sshd not found: install OpenSSH server (Debian: apt-get install openssh-server)",
        )?;
    let ssh_dir = dir.join("ssh");
    std::fs::create_dir_all(&ssh_dir)?;
    let key = |name: &str| ssh_dir.join(name).display().to_string();
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &key("host_key")],
    )
    .await?;
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &key("client_key")],
    )
    .await?;
    std::fs::copy(
        ssh_dir.join("client_key.pub"),
        ssh_dir.join("authorized_keys"),
    )?;
    // sshd needs its privilege-separation directory when started as root.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port()?;
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\nPidFile {pid}\n\
         StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\nLogLevel ERROR\n",
        host = key("host_key"),
        auth = key("authorized_keys"),
        pid = key("sshd.pid"),
    );
    std::fs::write(ssh_dir.join("sshd_config"), config)?;
    let sshd = Command::new(sshd_bin)
        .args(["-D", "-e", "-f", &key("sshd_config")])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sshd")?;
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "sshd").await?;
    let local_port = free_port()?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let ssh = Command::new("ssh")
        .args(["-N", "-p", &port.to_string(), "-i", &key("client_key")])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
        .args(["-L", &format!("127.0.0.1:{local_port}:{target}")])
        .arg(format!("{user}@127.0.0.1"))
        .kill_on_drop(true)
        .spawn()
        .context("starting ssh")?;
    let local = SocketAddr::from(([127, 0, 0, 1], local_port));
    wait_for_port(local, "ssh -L").await?;
    Ok(SshTunnel {
        _sshd: sshd,
        _ssh: ssh,
        local,
    })
}

/// The three paths the baseline benchmarks compare (bulk, latency, session
/// open, pgbench).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path3 {
    Direct,
    SshL,
    Postern,
}

impl Path3 {
    pub fn label(self) -> &'static str {
        match self {
            Path3::Direct => "direct",
            Path3::SshL => "ssh -L",
            Path3::Postern => "postern",
        }
    }
}

/// The benchmark target and the two ways to it besides the direct one: an
/// `ssh -L` tunnel and Postern (`postern-gateway dev` with its embedded agent,
/// TLS on every hop, and `postern connect`). Started once and shared by the
/// scenarios that compare the three paths.
pub struct Baselines {
    pub target: SocketAddr,
    pub ssh: SshTunnel,
    pub postern: Postern,
    _dir: tempfile::TempDir,
}

impl Baselines {
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let target = crate::target::start().await?;
        eprintln!(
            "starting the target, an ssh -L tunnel and Postern (binaries from {})",
            bin_dir.display()
        );
        let ssh = ssh_tunnel(dir.path(), target).await?;
        let postern = postern(bin_dir, dir.path(), target, &["--kind", "tcp"]).await?;
        Ok(Self {
            target,
            ssh,
            postern,
            _dir: dir,
        })
    }

    /// The paths in table order; ssh -L (index 1) is what ratios compare with.
    pub fn paths(&self) -> [(Path3, SocketAddr); 3] {
        [
            (Path3::Direct, self.target),
            (Path3::SshL, self.ssh.local),
            (Path3::Postern, self.postern.local),
        ]
    }
}

/// The order of `count` paths in round `round`: rotated each round so slow
/// drift of the machine cancels out.
pub fn rotation(round: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |i| (i + round) % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_is_seen_without_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        wait_for_listener(addr, "the test listener").await.unwrap();
        // Nobody connected to find out.
        assert!(listener.accept().is_err());
    }
}
