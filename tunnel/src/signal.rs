//! Process signals shared by the binaries.

/// SIGTERM (what ECS, Cloud Run and Kubernetes send) and SIGINT (Ctrl-C)
/// handlers, installed when this is created. Create it before binding any
/// listener: until a handler is installed, a SIGTERM takes the default action
/// and kills the process, so one sent right after `/readyz` answered (as a
/// quick rolling deploy may) would skip the drain.
pub struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers now; needs a Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGTERM or SIGINT received since [`install`](Self::install).
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C received after its first poll; binaries that
/// serve should use [`Shutdown::install`] before binding instead.
pub async fn shutdown() {
    Shutdown::install()
        .expect("installing SIGTERM and SIGINT handlers")
        .wait()
        .await
}
