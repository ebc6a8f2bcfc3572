//! A throwaway DynamoDB-API server for tests: moto's server (PyPI `moto[server]`)
//! on a free loopback port, killed when dropped.
//!
//! The binary is `$POSTERN_TEST_MOTO_SERVER` (scripts/test installs moto into
//! the project's venv and sets it). Without it, starting panics with a message
//! saying to run scripts/test: tests that need it fail, never skip.
//!
//! moto_server serves each request on its own thread, and moto's DynamoDB
//! checks a write's condition and applies it in two steps, so two racing
//! conditional writes can both succeed there (DynamoDB itself never lets them).
//! The server is therefore run single-threaded: the same `moto.server.main`
//! with `threaded=False`, started by the Python in the binary's `#!` line.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_ports;

/// Names the `moto_server` binary.
pub const MOTO_SERVER_ENV: &str = "POSTERN_TEST_MOTO_SERVER";

const START_DEADLINE: Duration = Duration::from_secs(30);

/// moto_server's entry point, serving one request at a time.
const SINGLE_THREADED: &str = "import werkzeug.serving as serving\n\
run_simple = serving.run_simple\n\
serving.run_simple = lambda *a, **k: run_simple(*a, **{**k, 'threaded': False})\n\
import moto.server\n\
moto.server.main()\n";

/// The Python that runs `binary` (its `#!` line), else the `python3` beside it.
fn python_of(binary: &std::path::Path) -> PathBuf {
    let script = std::fs::read_to_string(binary)
        .unwrap_or_else(|e| panic!("cannot read {} ({MOTO_SERVER_ENV}): {e}", binary.display()));
    script
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("#!"))
        .map(|interpreter| PathBuf::from(interpreter.trim()))
        .filter(|python| python.is_file())
        .unwrap_or_else(|| binary.with_file_name("python3"))
}

/// One `moto_server` process on 127.0.0.1; see the [module documentation](self).
pub struct MotoServer {
    dir: tempfile::TempDir,
    port: u16,
    process: Child,
}

fn moto_server_binary() -> PathBuf {
    match std::env::var_os(MOTO_SERVER_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{MOTO_SERVER_ENV} is not set: the DynamoDB tests need moto's server. Run them \
             with scripts/test, which installs moto[server] into the project's venv and sets it \
             (or: pip install 'moto[server]' and set {MOTO_SERVER_ENV}=/path/to/moto_server)"
        ),
    }
}

impl MotoServer {
    /// Starts the server and waits (polling) until it accepts connections.
    ///
    /// # Panics
    /// If the binary is missing or the server does not come up.
    pub fn start() -> Self {
        let binary = moto_server_binary();
        let python = python_of(&binary);
        let mut dir = tempfile::Builder::new()
            .prefix("postern-moto-")
            .tempdir()
            .expect("create a temporary directory for moto_server");
        for _ in 0..5 {
            let port = free_ports(1)[0];
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("create moto.log");
            let process = Command::new(&python)
                .args([
                    "-c",
                    SINGLE_THREADED,
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} for {}: {e}",
                        python.display(),
                        binary.display()
                    )
                });
            let mut server = Self { dir, port, process };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(exited) if exited => {
                    // Most likely the port was taken between probe and bind.
                    let log = server.log();
                    if !log.contains("in use") {
                        panic!("moto_server exited at start:\n{log}");
                    }
                    dir = server.into_dir();
                }
                Err(_) => panic!(
                    "moto_server did not accept connections within {START_DEADLINE:?}:\n{}",
                    server.log()
                ),
            }
        }
        panic!("moto_server found no free port in 5 attempts")
    }

    /// Ok when it accepts connections; Err(true) if the process exited,
    /// Err(false) on timeout.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return Err(true);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(false)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let dir = tempfile::Builder::new()
            .prefix("postern-moto-")
            .tempdir()
            .expect("create a temporary directory for moto_server");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, for an endpoint override.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
