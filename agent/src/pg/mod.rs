//! Postgres sessions at Layer 7. The agent, not the person, logs in to the
//! database (with a credential it resolves locally), answers the person's
//! startup itself, then runs every byte through `postern-l7-pg`'s session
//! with the connection's guardrails and masking, and reports each statement
//! to the gateway as an audit frame.

pub mod audit;
pub mod cancel;
pub mod catalog;
pub mod credentials;
pub mod dial;
pub mod fuzzing;
pub mod hooks;
pub mod relay;
pub mod startup;

use std::time::Duration;

use bytes::BytesMut;
use futures::Stream;
use futures::future::BoxFuture;
use postern_l7_pg::messages::{
    Authentication, CancelRequest, ErrorResponse, NegotiateProtocolVersion, StartupMessage,
    WireMessage,
};
use postern_l7_pg::session::{Session, SessionOptions};
use postern_l7_pg::{FrontendDecoder, Limits, Tag};
use postern_l7_sql::SqlPolicy;
use postern_tunnel::FrameStream;
use postern_tunnel::proto::{Frame, PostgresSession, SessionRequest, StatementAudit, frame::Kind};
use postern_tunnel::stream::FINISH_LINGER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::config::AgentConfig;
use cancel::CancelTarget;
use catalog::CatalogError;
use credentials::DbLogin;
use dial::{DbStream, TlsMode};
use hooks::SqlHooks;
use relay::{CatalogSource, Pump};
use startup::{StartupPlan, log_in, server_parameters};

/// How long the person's client has to send its startup.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the database has to log the agent in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A Postgres session's settings, checked before anything is dialed.
pub struct Plan {
    pub policy: SqlPolicy,
    /// The policy compiled (guardrail patterns, masking rules), until the
    /// session takes it.
    hooks: Option<SqlHooks>,
    pub login: DbLogin,
    pub tls: TlsMode,
    pub database: Option<String>,
}

impl Plan {
    /// Errors are the reasons given to the gateway (and so to the person).
    pub fn new(settings: Option<&PostgresSession>, config: &AgentConfig) -> Result<Self, String> {
        let default = PostgresSession::default();
        let settings = settings.unwrap_or(&default);
        let policy: SqlPolicy = if settings.policy_json.trim().is_empty() {
            SqlPolicy::default()
        } else {
            serde_json::from_str(&settings.policy_json)
                .map_err(|e| format!("the connection's SQL policy is invalid: {e}"))?
        };
        // Compiled now so a bad rule refuses the session before it starts.
        let hooks = SqlHooks::new(&policy)
            .map_err(|e| format!("the connection's SQL policy is invalid: {e}"))?;
        let login = config
            .credentials
            .resolve(&settings.credential)
            .map_err(|e| e.to_string())?;
        let tls = settings.tls.parse()?;
        Ok(Self {
            policy,
            hooks: Some(hooks),
            login,
            tls,
            database: Some(settings.database.clone()).filter(|d| !d.is_empty()),
        })
    }
}

/// Dials the database and negotiates TLS as the plan says.
pub async fn connect(target: &str, plan: &Plan, config: &AgentConfig) -> Result<DbStream, String> {
    let socket = crate::session::dial(target, config).await?;
    let (stream, encrypted) =
        dial::negotiate(socket, target, plan.tls, config.db_ca_pem.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    debug!(encrypted, "connected to the database");
    Ok(stream)
}

/// Runs the session on an attached stream and ends the stream (with the
/// error, if any, as its close reason).
pub async fn serve<I>(
    mut frames: FrameStream<I>,
    server: DbStream,
    plan: Plan,
    request: &SessionRequest,
    config: &AgentConfig,
) where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    let error = match run(&mut frames, server, plan, request, config).await {
        Ok(()) => {
            let (from_user, to_user) = frames.counters();
            info!(bytes_up = from_user, bytes_down = to_user, "session ended");
            let _ = frames.shutdown().await;
            None
        }
        Err(e) => {
            info!(error = %e, "session ended with an error");
            Some(format!("agent: {e}"))
        }
    };
    frames.finish(error, FINISH_LINGER).await;
}

/// What a person's client opened the stream for.
enum Opening {
    Startup(StartupMessage),
    Cancel(CancelRequest),
}

/// Runs the session on an attached stream; `server` is connected, not yet
/// logged in. Returns an error for the session's outcome.
pub async fn run<I>(
    frames: &mut FrameStream<I>,
    server: DbStream,
    plan: Plan,
    request: &SessionRequest,
    config: &AgentConfig,
) -> Result<(), String>
where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    // What the client sent after its startup stays here for the session.
    let mut early = BytesMut::with_capacity(1024);
    let opening = match tokio::time::timeout(STARTUP_TIMEOUT, read_opening(frames, &mut early))
        .await
    {
        Err(_) => {
            let error = ErrorResponse::new("FATAL", "08P01", "postern: no startup message in 30 s");
            let _ = frames.write_all(&error.encode()).await;
            return Err("the client sent no startup message".into());
        }
        Ok(Err(OpeningError::Io(e))) => return Err(format!("reading the startup: {e}")),
        Ok(Err(OpeningError::Protocol(error))) => {
            let _ = frames
                .write_all(&ErrorResponse::protocol_violation(&error).encode())
                .await;
            let _ = send_audit(
                frames,
                audit::protocol_error("the client", &error.to_string()),
            )
            .await;
            return Err(format!("bad startup from the client: {error}"));
        }
        Ok(Ok(opening)) => opening,
    };
    let startup = match opening {
        Opening::Cancel(cancel) => {
            forward_cancel(cancel, plan, request, config).await;
            return Ok(());
        }
        Opening::Startup(startup) => startup,
    };
    let startup_plan = StartupPlan {
        database: plan.database.clone(),
        read_only: plan.policy.guardrails.read_only,
        person: request.user.clone(),
    };
    let parameters = match server_parameters(&startup, &plan.login, &startup_plan) {
        Ok(parameters) => parameters,
        Err(refusal) => {
            let _ = frames.write_all(&refusal.encode()).await;
            return Err(refusal.message().unwrap_or("refused").to_owned());
        }
    };
    let mut server = server;
    let hello = match tokio::time::timeout(
        LOGIN_TIMEOUT,
        log_in(&mut server, parameters.clone(), &plan.login),
    )
    .await
    {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            warn!(error = %e, "database login failed");
            let _ = frames.write_all(&e.to_client()).await;
            return Err(e.to_string());
        }
        Err(_) => {
            let error = ErrorResponse::new(
                "FATAL",
                "08006",
                "postern agent: the database did not finish the login in 30 s",
            );
            let _ = frames.write_all(&error.encode()).await;
            return Err("database login timed out".into());
        }
    };
    // The client sees a key of the agent's making (see `cancel`).
    let registered = hello.key.map(|key| {
        config.cancel_keys.register(CancelTarget {
            key,
            connection: request.connection.clone(),
            user: request.user.clone(),
        })
    });
    let mut reply = BytesMut::new();
    if startup.version.minor > 0
        || startup
            .parameters
            .iter()
            .any(|(k, _)| k.starts_with("_pq_."))
    {
        NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized_options: startup
                .parameters
                .iter()
                .filter(|(k, _)| k.starts_with("_pq_."))
                .map(|(k, _)| k.clone())
                .collect(),
        }
        .encode_into(&mut reply);
    }
    Authentication::Ok.encode_into(&mut reply);
    for message in &hello.messages {
        reply.extend_from_slice(message);
    }
    if let Some((key, _)) = &registered {
        key.encode_into(&mut reply);
    }
    reply.extend_from_slice(&hello.ready);
    frames
        .write_all(&reply)
        .await
        .map_err(|e| format!("answering the startup: {e}"))?;
    info!(db_user = %plan.login.user, "logged in to the database");

    let mut plan = plan;
    let hooks = match plan.hooks.take() {
        Some(hooks) => hooks,
        None => SqlHooks::new(&plan.policy).map_err(|e| e.to_string())?,
    };
    let options = SessionOptions {
        limits: Limits::default(),
        record_parameters: plan.policy.audit_parameters,
    };
    let session = Session::established(hooks, options);
    let catalog = Catalog {
        target: request.target.clone(),
        parameters: catalog_parameters(&parameters),
        plan: &plan,
        config,
        stream: None,
    };
    let result = Pump::new(frames, server, session, catalog, options.limits)
        .with_client_bytes(early)
        .run()
        .await;
    drop(registered);
    result.map_err(|e| e.to_string())
}

enum OpeningError {
    Io(std::io::Error),
    Protocol(postern_l7_pg::ProtocolError),
}

/// Reads up to the startup (or cancel) message, refusing encryption
/// requests: the stream is already encrypted end to end by Postern.
async fn read_opening<I>(
    frames: &mut FrameStream<I>,
    buf: &mut BytesMut,
) -> Result<Opening, OpeningError>
where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    let mut decoder = FrontendDecoder::new(Limits::default());
    loop {
        let message = match decoder.decode(buf).map_err(OpeningError::Protocol)? {
            Some(message) => message,
            None => {
                if frames.read_buf(buf).await.map_err(OpeningError::Io)? == 0 {
                    return Err(OpeningError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the client left before its startup message",
                    )));
                }
                continue;
            }
        };
        match message.tag() {
            Tag::SslRequest | Tag::GssEncRequest => {
                frames.write_all(b"N").await.map_err(OpeningError::Io)?;
            }
            Tag::CancelRequest => {
                return message
                    .parse()
                    .map(Opening::Cancel)
                    .map_err(OpeningError::Protocol);
            }
            _ => {
                return message
                    .parse()
                    .map(Opening::Startup)
                    .map_err(OpeningError::Protocol);
            }
        }
    }
}

/// Sends the database a cancel for the session the client's key names, if
/// this person may cancel it. Like Postgres, says nothing either way.
async fn forward_cancel(
    cancel: CancelRequest,
    plan: Plan,
    request: &SessionRequest,
    config: &AgentConfig,
) {
    let Some(target) = config.cancel_keys.find(
        cancel.process_id,
        &cancel.secret_key,
        &request.connection,
        &request.user,
    ) else {
        warn!("cancel request with an unknown key ignored");
        return;
    };
    let real = CancelRequest {
        process_id: target.key.process_id,
        secret_key: target.key.secret_key.clone(),
    };
    let sent = async {
        let mut stream = connect(&request.target, &plan, config).await?;
        stream
            .write_all(&real.encode())
            .await
            .map_err(|e| e.to_string())?;
        // The server closes once it has read the request.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), sent).await {
        Ok(Ok(())) => info!("query cancel sent to the database"),
        Ok(Err(e)) => warn!(error = %e, "cannot send the cancel to the database"),
        Err(_) => warn!("sending the cancel to the database timed out"),
    }
}

async fn send_audit<I>(frames: &mut FrameStream<I>, audit: StatementAudit) -> std::io::Result<()>
where
    I: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    std::future::poll_fn(|cx| frames.poll_reserve_frame(cx)).await?;
    frames.send_reserved(Frame {
        kind: Some(Kind::Audit(audit)),
    })
}

/// The catalog connection logs in like the session, but names itself.
fn catalog_parameters(session: &[(String, String)]) -> Vec<(String, String)> {
    let mut parameters: Vec<(String, String)> = session
        .iter()
        .filter(|(k, _)| k == "user" || k == "database")
        .cloned()
        .collect();
    parameters.push(("application_name".into(), "postern-agent catalog".into()));
    parameters
}

struct Catalog<'a> {
    target: String,
    parameters: Vec<(String, String)>,
    plan: &'a Plan,
    config: &'a AgentConfig,
    stream: Option<DbStream>,
}

impl CatalogSource for Catalog<'_> {
    fn look_up<'a>(
        &'a mut self,
        oids: &'a [u32],
        hooks: &'a mut SqlHooks,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            if self.stream.is_none() {
                let mut stream = connect(&self.target, self.plan, self.config)
                    .await
                    .map_err(CatalogError::Connect)?;
                log_in(&mut stream, self.parameters.clone(), &self.plan.login)
                    .await
                    .map_err(|e| CatalogError::Connect(e.to_string()))?;
                self.stream = Some(stream);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(CatalogError::Connect("no connection".into()));
            };
            let result = catalog::look_up(stream, oids, &mut hooks.sources).await;
            if result.is_err() {
                self.stream = None;
            }
            result
        })
    }
}
