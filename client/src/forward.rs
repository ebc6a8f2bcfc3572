//! `postern connect`: checks access (rules, MFA, approval), opens the local
//! port, and forwards each client connection there as a session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

use crate::cli::client;
use crate::connect::Connector;
use crate::connections::{ConnectionView, client_hint};

/// Runs `postern connect NAME` until stopped: exit 0 once serving, an error
/// if stopped before the local port opened.
pub async fn connect(name: String, addr: SocketAddr, reason: &str) -> anyhow::Result<()> {
    // Installed before anything else: a SIGTERM or Ctrl-C at any step (while
    // waiting for an approval, say, or just as the port opens) ends the
    // command cleanly, and none falls between two handlers.
    let shutdown = postern_tunnel::signal::Shutdown::install()?;
    let listening = AtomicBool::new(false);
    tokio::select! {
        served = connect_and_serve(name, addr, reason, &listening) => served,
        // Stopping a forwarder is how it ends (exit 0); stopped before its
        // port opened (waiting for an approval, say), it did not do its job.
        // Queued spans are flushed on the way out either way.
        () = shutdown.wait() => {
            if listening.load(Ordering::Acquire) {
                Ok(())
            } else {
                anyhow::bail!("stopped before the local port opened")
            }
        }
    }
}

async fn connect_and_serve(
    name: String,
    addr: SocketAddr,
    reason: &str,
    listening: &AtomicBool,
) -> anyhow::Result<()> {
    let api = client().await?;
    // Rules, MFA and approval first: a refusal names its rule or group here,
    // and an approval is asked for and waited on before anything listens.
    crate::access::ensure_access(&api, &name, reason).await?;
    // Waiting for an approval may have renewed (and rotated) the saved
    // tokens: carry on with what is saved now.
    let api = client().await?;
    // Check first, so a typo fails here rather than at the first client connection.
    let connections: Vec<ConnectionView> = api.get("/v1/connections").await?;
    let Some(connection) = connections.iter().find(|c| c.name == name) else {
        anyhow::bail!("connection {name:?} does not exist (see `postern ls`)");
    };
    if !connection.agent_connected {
        eprintln!(
            "postern: warning: agent {:?} serving {name} is offline right now",
            connection.agent
        );
    }
    let login = api.login();
    let ca = login.ca_pem()?;
    let channel = postern_tunnel::http2::lazy_channel(&login.gateway_url, ca.as_deref())?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    listening.store(true, Ordering::Release);
    // The first line is machine-readable: scripts and tests wait for it.
    println!("listening on {local}");
    println!(
        "Forwarding {local} → {name} ({} {} via agent {}). Point your client at {local}: {}",
        connection.kind,
        connection.target,
        connection.agent,
        client_hint(connection, local)
    );
    println!("Press Ctrl-C to stop.");
    let url = login.gateway_url.clone();
    let fresh_ca = ca.clone();
    let mut connector = Connector::new(channel, login.token.clone(), &name)?
        .with_fresh_channels(std::sync::Arc::new(move || {
            postern_tunnel::http2::lazy_channel(&url, fresh_ca.as_deref()).ok()
        }))
        .with_tokens(crate::login::Tokens::new(login.clone()));
    if connection.kind == "postgres" {
        // The agent speaks to the database (with TLS if configured); the local
        // hop is loopback, so the client's encryption request is declined here.
        connector = connector.with_postgres_negotiation();
    }
    connector.serve(listener).await?;
    Ok(())
}
