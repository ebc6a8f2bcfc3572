//! PostgreSQL for the tests: the shared server scripts/test provides, a
//! database of one's own on it, or a private server (initdb/pg_ctl on a free
//! port) for what the shared one cannot do: passwords, TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The shared server: `POSTERN_TEST_PG_HOST`/`POSTERN_TEST_PG_PORT` (scripts/test
/// sets them), else 127.0.0.1:5432. Fails loudly if it is not there.
pub fn shared() -> (String, u16) {
    let host = std::env::var("POSTERN_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("POSTERN_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    let addr = format!("{host}:{port}");
    let reachable = addr
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok());
    assert!(
        reachable.is_some(),
        "these tests need PostgreSQL at {addr} (user postgres, trust auth). Run the suite \
         with scripts/test, which starts one, or set POSTERN_TEST_PG_HOST/POSTERN_TEST_PG_PORT."
    );
    (host, port)
}

/// Runs SQL as `postgres` with psql, failing the test if it fails; returns
/// the unaligned output.
pub fn psql(host: &str, port: u16, database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            &port.to_string(),
        ])
        .args(["-U", "postgres", "-d", database, "-c", sql])
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql is installed (scripts/test installs the PostgreSQL client)");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A database made for one test on the shared server, dropped after it.
pub struct Database {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Database {
    /// `label` keeps names apart between tests; the process id between runs.
    pub fn create(label: &str) -> Database {
        let (host, port) = shared();
        let name = format!("postern_{label}_{}", std::process::id());
        let db = Database { name, host, port };
        db.admin(&format!("drop database if exists {} with (force)", db.name));
        db.admin(&format!("create database {}", db.name));
        db
    }

    fn admin(&self, sql: &str) {
        psql(&self.host, self.port, "postgres", sql);
    }

    /// Runs SQL in this database as `postgres`.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.host, self.port, &self.name, sql)
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .output();
    }
}

/// The server binaries: `POSTERN_TEST_PG_BIN`, else the newest under /usr/lib/postgresql.
pub fn server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("POSTERN_TEST_PG_BIN") {
        return bin.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().expect(
        "this test starts its own PostgreSQL with initdb and pg_ctl: install the server \
         (Debian: apt-get install postgresql) or set POSTERN_TEST_PG_BIN to its bin directory",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// initdb and postgres refuse to run as root: run them as `postgres` then.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn check(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How to set up a private server.
#[derive(Debug, Clone)]
pub struct PrivateOptions {
    /// The superuser `postgres`'s password (for password methods).
    pub superuser_password: String,
    /// pg_hba.conf, whole.
    pub hba: String,
    /// `(file name, contents)` written into the data directory before start
    /// (certificates, keys), readable only by the server.
    pub files: Vec<(String, Vec<u8>)>,
    /// Extra `-c name=value` settings.
    pub settings: Vec<String>,
}

impl Default for PrivateOptions {
    fn default() -> Self {
        Self {
            superuser_password: "super secret".into(),
            hba: "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n".into(),
            files: Vec::new(),
            settings: Vec::new(),
        }
    }
}

/// A PostgreSQL of the test's own, stopped and deleted on drop.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// `label` keeps concurrent servers' directories apart.
    pub fn start(label: &str, options: PrivateOptions) -> Self {
        let bin = server_bin();
        let dir = std::env::temp_dir().join(format!("postern-pg-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), &options.superuser_password).unwrap();
        let data = dir.join("data");
        if is_root() {
            check(
                Command::new("chown").args(["-R", "postgres"]).arg(&dir),
                "chown",
            );
        }
        check(
            as_server_user(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", dir.join("pw").display())),
            "initdb",
        );
        std::fs::write(data.join("pg_hba.conf"), &options.hba).unwrap();
        for (name, contents) in &options.files {
            let path = data.join(name);
            std::fs::write(&path, contents).unwrap();
            check(Command::new("chmod").arg("600").arg(&path), "chmod");
            if is_root() {
                check(Command::new("chown").arg("postgres").arg(&path), "chown");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivatePostgres { dir, bin, port };
        let mut settings = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.dir.display()
        );
        for setting in &options.settings {
            settings.push_str(" -c ");
            settings.push_str(setting);
        }
        check(
            as_server_user(&server.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(server.dir.join("log"))
                .args(["-w", "-o", &settings, "start"]),
            "pg_ctl start",
        );
        server
    }

    /// Runs SQL as the superuser over the server's Unix socket (trusted).
    pub fn sql(&self, sql: &str) -> String {
        let output = as_server_user(Path::new("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python with psycopg (libpq's driver, from PyPI) that scripts/test
/// installs in a venv and names in `POSTERN_TEST_PYTHON`; fails loudly without it.
pub fn python_with_psycopg() -> String {
    let python = std::env::var("POSTERN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import psycopg"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{python} cannot import psycopg: run the suite with scripts/test, which installs \
         psycopg[binary] from PyPI in a venv and sets POSTERN_TEST_PYTHON"
    );
    python
}
