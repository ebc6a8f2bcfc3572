//! TCP_NODELAY for sqlx's Postgres connections.
//!
//! sqlx 0.9 dials Postgres without TCP_NODELAY and has no option to set it.
//! Over TLS the client's small back-to-back writes then wait, by Nagle's
//! algorithm, for the server's delayed ACK (~40 ms on Linux), several times per
//! connection: a gateway with a TLS policy store took about 200 ms to become
//! ready instead of about 20. Until sqlx sets it, such connections go through
//! this relay: sqlx dials a Unix socket of this process, and the relay dials the
//! server over TCP with TCP_NODELAY and copies bytes both ways. TLS stays end to
//! end: sqlx still negotiates it and verifies the server by the URL's host.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The relay for one server; stops (and removes its socket) when dropped.
pub(super) struct NodelayRelay {
    dir: PathBuf,
    accept: JoinHandle<()>,
    /// Why the last dial of the server failed: sqlx sees only a closed socket.
    last_error: Arc<Mutex<Option<std::io::Error>>>,
}

impl NodelayRelay {
    /// Routes `options` through a relay when sqlx would negotiate TLS over TCP
    /// (sslmode prefer, require, verify-ca or verify-full); without TLS no
    /// stall was measured, and a Unix socket needs none.
    pub(super) fn wrap(
        options: PgConnectOptions,
    ) -> std::io::Result<(PgConnectOptions, Option<Self>)> {
        let tls = !matches!(
            options.get_ssl_mode(),
            PgSslMode::Disable | PgSslMode::Allow
        );
        if !tls || options.get_socket().is_some() || options.get_host().starts_with('/') {
            return Ok((options, None));
        }
        let relay = Self::start(options.get_host().to_owned(), options.get_port())?;
        let options = options.socket(&relay.dir);
        Ok((options, Some(relay)))
    }

    fn start(host: String, port: u16) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postern-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        create_private_dir(&dir)?;
        // sqlx dials `<dir>/.s.PGSQL.<port>`, as libpq names a server's socket.
        let listener = UnixListener::bind(dir.join(format!(".s.PGSQL.{port}")))?;
        let last_error = Arc::new(Mutex::new(None));
        let errors = last_error.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, host.clone(), port, errors.clone()));
            }
        });
        Ok(Self {
            dir,
            accept,
            last_error,
        })
    }

    /// The error of the last failed dial of the server, taken.
    pub(super) fn take_error(&self) -> Option<std::io::Error> {
        self.last_error.lock().ok()?.take()
    }
}

impl Drop for NodelayRelay {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn relay(
    mut client: UnixStream,
    host: String,
    port: u16,
    errors: Arc<Mutex<Option<std::io::Error>>>,
) {
    let mut server = match TcpStream::connect((host.as_str(), port)).await {
        Ok(server) => server,
        Err(error) => {
            // sqlx sees only the closed socket: keep what really happened.
            tracing::warn!(%host, port, %error, "cannot connect to Postgres");
            let error = std::io::Error::new(
                error.kind(),
                format!("cannot connect to {host}:{port}: {error}"),
            );
            if let Ok(mut last) = errors.lock() {
                *last = Some(error);
            }
            return;
        }
    };
    if let Err(error) = server.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set on a Postgres connection");
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Only this process's user may dial the relay.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
