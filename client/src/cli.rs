//! Command-line parsing and the commands themselves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use postern_telemetry::{Logging, Service, Telemetry, TelemetryError, TracingConfig};
use postern_tunnel::env::Env;
use serde_json::{Value, json};

use crate::api::ApiClient;
use crate::config::{Login, config_path};
use crate::connections::ConnectionCommand;
use crate::login::LoginRequest;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Reach private databases and hosts through a Postern gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in: through the gateway's identity provider (device code by
    /// default, works over SSH), or with an API token (`--token`).
    Login {
        /// e.g. https://postern.example.com
        gateway_url: String,
        /// An API token (automation); without it, single sign-on.
        #[arg(long, env = "POSTERN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM file of the CA that signed the gateway's certificate (dev mode prints it).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Log in in a browser on this computer (loopback redirect with PKCE)
        /// instead of with a device code.
        #[arg(long, conflicts_with = "token")]
        browser: bool,
        /// Ask the identity provider for multi-factor authentication.
        #[arg(long, conflicts_with = "token")]
        mfa: bool,
    },
    /// Forget the saved login.
    Logout,
    /// Who the saved token belongs to.
    Whoami,
    /// List the connections you can reach.
    Ls,
    /// Open a local port to a connection; every client connection is one session.
    Connect {
        name: String,
        /// Local port (0 picks a free one).
        #[arg(long, short, default_value_t = 0)]
        port: u16,
        /// Local address to listen on.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        bind: IpAddr,
        /// Why you need access, for the approvers of a connection that needs approval.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Manage connections (admin).
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Manage agents (admin).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage API tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage access rules (admin).
    #[command(subcommand)]
    Rule(crate::access::RuleCommand),
    /// Policy as code: export it as YAML, apply a file (admin).
    #[command(subcommand)]
    Policy(crate::policy::PolicyCommand),
    /// Just-in-time access: ask for, list, approve and deny reviews.
    #[command(subcommand)]
    Review(crate::access::ReviewCommand),
    /// Recent sessions (admin).
    Sessions {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Recent audit events, newest first (admin): admin changes, sessions and
    /// every statement run through a protocol-aware connection.
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only what this person did.
        #[arg(long)]
        user: Option<String>,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// Only events about this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Only statements.
        #[arg(long)]
        statements: bool,
        /// Only events at or after this: a duration back from now (30m, 1h,
        /// 2d) or an RFC 3339 time (2026-03-01T09:30:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this (same forms as --since).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Register an agent and print its token (shown once).
    Add { name: String },
    /// Remove an agent (its token stops working).
    Rm { name: String },
    /// List agents and whether they are connected.
    Ls,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a person or automation (shown once).
    Add {
        user: String,
        #[arg(long, default_value = "user")]
        role: String,
        /// A group the holder belongs to, for access rules (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// List tokens (never their values).
    Ls,
}

/// Runs the CLI; returns the process exit code.
pub async fn run() -> i32 {
    let cli = Cli::parse();
    let telemetry = match init_telemetry(&Env::from_process()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("postern: {e}");
            return 2;
        }
    };
    let code = match execute(cli.command).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("postern: {e:#}");
            1
        }
    };
    telemetry.shutdown().await;
    code
}

/// Text logs on stderr (POSTERN_LOG filters them); with an OTLP endpoint set,
/// each session `postern connect` opens is the root of a trace that the
/// gateway and the agent continue.
fn init_telemetry(env: &Env) -> Result<Telemetry, TelemetryError> {
    let logging = Logging {
        filter_var: "POSTERN_LOG",
        default_filter: "warn",
        json: false,
    };
    let service = Service {
        name: "postern",
        version: env!("CARGO_PKG_VERSION"),
        instance: None,
    };
    let tracing = TracingConfig::from_env(env, service.name)?;
    postern_telemetry::init(env, &logging, &service, tracing.as_ref())
}

/// The API client for the saved login, its token renewed first if it is about to expire.
pub(crate) async fn client() -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(crate::login::fresh(Login::load()?).await?)?)
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Login {
            gateway_url,
            token,
            ca_cert,
            browser,
            mfa,
        } => {
            crate::login::run(LoginRequest {
                gateway_url,
                token,
                ca_cert,
                browser,
                mfa,
            })
            .await?
        }
        Command::Logout => {
            let path = config_path()?;
            match std::fs::remove_file(&path) {
                Ok(()) => println!("Removed {}.", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in."),
                Err(e) => return Err(e.into()),
            }
        }
        Command::Whoami => {
            let api = client().await?;
            let me: Value = api.get("/v1/whoami").await?;
            let groups: Vec<&str> = me["groups"]
                .as_array()
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "{} ({}) on {}\n  groups: {}\n  mfa: {}",
                me["user"].as_str().unwrap_or("?"),
                me["role"].as_str().unwrap_or("?"),
                api.login().gateway_url,
                if groups.is_empty() {
                    "none".to_owned()
                } else {
                    groups.join(", ")
                },
                if me["mfa"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
            );
        }
        Command::Ls => crate::connections::list(&client().await?).await?,
        Command::Connect {
            name,
            port,
            bind,
            reason,
        } => crate::forward::connect(name, SocketAddr::new(bind, port), &reason).await?,
        Command::Rule(command) => crate::access::rules(&client().await?, command).await?,
        Command::Policy(command) => crate::policy::execute(&client().await?, command).await?,
        Command::Review(command) => crate::access::reviews(&client().await?, command).await?,
        Command::Connection(command) => {
            crate::connections::execute(&client().await?, command).await?
        }
        Command::Agent(AgentCommand::Add { name }) => {
            let api = client().await?;
            let created: Value = api.post("/v1/agents", &json!({ "name": name })).await?;
            let token = created["token"].as_str().unwrap_or_default();
            println!("Agent {name} registered. Its token is shown only now:\n\n  {token}\n");
            println!(
                "Run the agent inside the private network with:\n  POSTERN_GATEWAY_URL={} POSTERN_AGENT_TOKEN={token} postern-agent",
                api.login().gateway_url
            );
        }
        Command::Agent(AgentCommand::Rm { name }) => {
            client()
                .await?
                .delete(&format!("/v1/agents/{name}"))
                .await?;
            println!("Removed agent {name}.");
        }
        Command::Agent(AgentCommand::Ls) => {
            let agents: Vec<Value> = client().await?.get("/v1/agents").await?;
            println!("{:<24} CONNECTED", "NAME");
            for agent in agents {
                println!(
                    "{:<24} {}",
                    agent["name"].as_str().unwrap_or("?"),
                    if agent["connected"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
        }
        Command::Token(TokenCommand::Add { user, role, groups }) => {
            let created: Value = client()
                .await?
                .post(
                    "/v1/tokens",
                    &json!({ "user": user, "role": role, "groups": groups }),
                )
                .await?;
            println!(
                "Token for {user} ({role}), shown only now:\n\n  {}\n",
                created["token"].as_str().unwrap_or_default()
            );
        }
        Command::Token(TokenCommand::Ls) => {
            let tokens: Vec<Value> = client().await?.get("/v1/tokens").await?;
            println!("{:<24} {:<8} GROUPS", "USER", "ROLE");
            for token in tokens {
                println!(
                    "{:<24} {:<8} {}",
                    token["user"].as_str().unwrap_or("?"),
                    token["role"].as_str().unwrap_or("?"),
                    crate::access::joined(&token["groups"])
                );
            }
        }
        Command::Sessions { limit } => {
            let sessions: Vec<Value> = client()
                .await?
                .get(&format!("/v1/sessions?limit={limit}"))
                .await?;
            println!(
                "{:<36} {:<12} {:<16} {:>12} {:>12} OUTCOME",
                "SESSION", "USER", "CONNECTION", "BYTES UP", "BYTES DOWN"
            );
            for s in sessions {
                println!(
                    "{:<36} {:<12} {:<16} {:>12} {:>12} {}",
                    s["id"].as_str().unwrap_or("?"),
                    s["user"].as_str().unwrap_or("?"),
                    s["connection"].as_str().unwrap_or("?"),
                    s["bytes_up"].as_u64().unwrap_or(0),
                    s["bytes_down"].as_u64().unwrap_or(0),
                    s["outcome"].as_str().unwrap_or("open"),
                );
            }
        }
        Command::Audit {
            limit,
            user,
            session,
            connection,
            statements,
            since,
            until,
        } => {
            let mut query = format!("/v1/audit?limit={limit}");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            for (name, value) in [("since", since), ("until", until)] {
                if let Some(value) = value {
                    let at = crate::when::parse_time(&value, now)
                        .map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
                    query.push_str(&format!("&{name}={at}"));
                }
            }
            let action = statements.then(|| "sql.".to_owned());
            for (name, value) in [
                ("user", user),
                ("session", session),
                ("connection", connection),
                ("action", action),
            ] {
                if let Some(value) = value {
                    query.push_str(&format!("&{name}={}", url_encode(&value)));
                }
            }
            let events: Vec<Value> = client().await?.get(&query).await?;
            for e in events {
                println!(
                    "{} {} {} {} {} {} {}",
                    e["at_ms"],
                    e["actor"].as_str().unwrap_or("?"),
                    e["action"].as_str().unwrap_or("?"),
                    e["target"].as_str().unwrap_or("?"),
                    e["session_id"].as_str().unwrap_or("-"),
                    e["outcome"].as_str().unwrap_or("?"),
                    e["detail"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
