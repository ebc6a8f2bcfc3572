//! What the benchmarks read from the processes they measure: the gateway's
//! Prometheus metrics, and memory from `/proc`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The text of `/metrics` on a gateway's internal port (plain HTTP/1.1).
pub async fn metrics(internal: SocketAddr) -> anyhow::Result<String> {
    let fetch = async {
        let mut socket = tokio::net::TcpStream::connect(internal).await?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nhost: {internal}\r\nconnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        socket.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .with_context(|| format!("metrics at {internal} did not answer within 10 s"))?
        .with_context(|| format!("reading metrics at {internal}"))?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!(
            "unexpected metrics answer from {internal}: {}",
            response.lines().next().unwrap_or_default()
        ),
    }
}

/// The value of one sample, e.g. `sample(text, "postern_splices_total", &[("path", "peer")])`;
/// zero when the sample is absent (a counter no one has touched yet).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(key, value)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{key}=\"{value}\""))
                });
            if matches { value.parse().ok() } else { None }
        })
        .unwrap_or(0.0)
}

/// Polls the metrics at `internal` until `ready` holds for them (a readiness
/// signal, not a fixed sleep); fails after `timeout` naming `what`.
pub async fn wait_metrics(
    internal: SocketAddr,
    timeout: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = metrics(internal).await?;
        if ready(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{what}: not reached within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Memory of one process, in KiB, as the kernel accounts it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// `VmRSS` from `/proc/PID/status`: resident pages.
    pub vm_rss_kib: u64,
    /// `Rss` and `Anonymous` from `/proc/PID/smaps_rollup` (heap and stacks
    /// are anonymous; the binary's own pages are not).
    pub rollup_rss_kib: u64,
    pub anonymous_kib: u64,
    pub threads: u64,
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let get = |text: &str, name: &str, file: &str| {
        field(text, name).with_context(|| format!("no {name} in /proc/{pid}/{file}"))
    };
    Ok(Memory {
        vm_rss_kib: get(&status, "VmRSS", "status")?,
        rollup_rss_kib: get(&rollup, "Rss", "smaps_rollup")?,
        anonymous_kib: get(&rollup, "Anonymous", "smaps_rollup")?,
        threads: get(&status, "Threads", "status")?,
    })
}

/// CPU seconds used by `roots` and every process descended from them (sshd's
/// per-connection process, say), each counted once, from one scan of /proc.
/// Processes that exit meanwhile count nothing.
pub fn tree_cpu_seconds(roots: &[u32]) -> f64 {
    let parents = parent_pids();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0.0;
    let mut pending = roots.to_vec();
    while let Some(pid) = pending.pop() {
        if !seen.insert(pid) {
            continue;
        }
        total += cpu_seconds(pid).unwrap_or(0.0);
        pending.extend(parents.iter().filter(|(_, p)| *p == pid).map(|(c, _)| *c));
    }
    total
}

/// `(pid, parent pid)` of every process.
fn parent_pids() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name in parentheses: state, then the parent pid.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect()
}

/// CPU time a process has used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // utime and stime are the 12th and 13th fields after the command name in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no CPU times in /proc/{pid}/stat"))
    };
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / per_second)
}

/// Open file descriptors of a process (sockets included).
pub fn open_fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64)
}

/// The process below `root` (itself included) that runs `program`: the
/// gateway when it runs under a wrapper such as heaptrack.
pub fn descendant_running(root: u32, program: &std::path::Path) -> anyhow::Result<u32> {
    let program = std::fs::canonicalize(program)?;
    let mut family = vec![root];
    let mut index = 0;
    while index < family.len() {
        let parent = family[index];
        if std::fs::read_link(format!("/proc/{parent}/exe")).is_ok_and(|exe| exe == program) {
            return Ok(parent);
        }
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // The parent pid is the second field after the command name in parentheses.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(parent) {
                family.push(pid);
            }
        }
        index += 1;
    }
    bail!("no process under pid {root} runs {}", program.display())
}

/// The machine a report was measured on, for the record.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_default(),
        memory_gib: field(&meminfo, "MemTotal").unwrap_or(0) as f64 / (1024.0 * 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# TYPE postern_splices counter\n\
                    postern_splices_total{path=\"local\"} 3\n\
                    postern_splices_total{path=\"peer\"} 5\n\
                    postern_agents_connected 7\n\
                    postern_agents_connected_other 9\n";
        assert_eq!(
            sample(text, "postern_splices_total", &[("path", "peer")]),
            5.0
        );
        assert_eq!(
            sample(text, "postern_splices_total", &[("path", "relay")]),
            0.0
        );
        assert_eq!(sample(text, "postern_agents_connected", &[]), 7.0);
    }

    #[test]
    fn this_process_has_memory() {
        let memory = memory(std::process::id()).unwrap();
        assert!(memory.vm_rss_kib > 0 && memory.rollup_rss_kib > 0 && memory.threads > 0);
        assert!(open_fds(std::process::id()).unwrap() > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(cpu_seconds(std::process::id()).unwrap() > 0.0);
    }

    #[test]
    fn a_process_tree_counts_its_children_once() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let child_pid = child.id();
        while cpu_seconds(child_pid).unwrap() == 0.0 {}
        let own = cpu_seconds(me).unwrap();
        let tree = tree_cpu_seconds(&[me]);
        assert!(tree > own, "the child's CPU counts: {tree} vs {own}");
        assert_eq!(
            tree_cpu_seconds(&[me, child_pid, me]),
            tree_cpu_seconds(&[me])
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
