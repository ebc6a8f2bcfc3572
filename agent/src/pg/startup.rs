//! The startup, both ways: what the agent asks the database for on the
//! person's behalf, and its own login with the credential it resolved.

use bytes::{Bytes, BytesMut};
use postern_l7_pg::auth::{AuthError, Login, LoginStep};
use postern_l7_pg::messages::{
    Authentication, BackendKeyData, ErrorResponse, StartupMessage, WireMessage,
};
use postern_l7_pg::{BackendDecoder, Limits, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::credentials::DbLogin;
use super::dial::DbStream;

/// Startup parameters a client may pass on. Everything else is dropped:
/// `options` could carry `-c default_transaction_read_only=off`, and other
/// settings could move where names resolve under table rules.
const PASSED_ON: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
];

/// Where the session goes and as whom.
#[derive(Debug, Clone)]
pub struct StartupPlan {
    /// The database the connection pins, if any.
    pub database: Option<String>,
    pub read_only: bool,
    /// The person, for `application_name` (seen in `pg_stat_activity`).
    pub person: String,
}

/// The parameters of the agent's own StartupMessage, or the error for the
/// client if it asked for something no Postern session may have.
pub fn server_parameters(
    client: &StartupMessage,
    login: &DbLogin,
    plan: &StartupPlan,
) -> Result<Vec<(String, String)>, ErrorResponse> {
    if client
        .parameter("replication")
        .is_some_and(|v| !matches!(v, "false" | "off" | "no" | "0"))
    {
        return Err(ErrorResponse::new(
            "FATAL",
            "42501",
            "replication connections are not allowed through Postern",
        ));
    }
    let database = plan
        .database
        .clone()
        .or_else(|| client.parameter("database").map(str::to_owned))
        .unwrap_or_else(|| login.user.clone());
    let mut parameters = vec![
        ("user".to_owned(), login.user.clone()),
        ("database".to_owned(), database),
    ];
    let mut application = None;
    for (name, value) in &client.parameters {
        let lower = name.to_ascii_lowercase();
        if lower == "application_name" {
            application = Some(value.clone());
        } else if PASSED_ON.contains(&lower.as_str()) {
            parameters.push((name.clone(), value.clone()));
        }
    }
    let tag = format!("postern:{}", plan.person);
    parameters.push((
        "application_name".to_owned(),
        match application.filter(|a| !a.is_empty()) {
            Some(app) => format!("{app} ({tag})"),
            None => tag,
        },
    ));
    if plan.read_only {
        // The database refuses writes that no parse can see (inside functions).
        parameters.push(("default_transaction_read_only".to_owned(), "on".to_owned()));
    }
    Ok(parameters)
}

/// What the server said between AuthenticationOk and its first ReadyForQuery.
#[derive(Debug)]
pub struct ServerHello {
    /// ParameterStatus and NoticeResponse messages, raw, in order.
    pub messages: Vec<Bytes>,
    pub key: Option<BackendKeyData>,
    pub ready: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the database connection failed during login: {0}")]
    Io(#[from] std::io::Error),
    #[error("the database sent a malformed message during login: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the agent cannot log in to the database: {0}")]
    Auth(#[from] AuthError),
    /// The server refused (raw ErrorResponse, passed to the client as it is).
    #[error("the database refused the login: {message}")]
    Refused { message: String, raw: Bytes },
    #[error("the database sent {0} during login")]
    Unexpected(char),
}

impl LoginError {
    /// The message for the client: the server's own, or one in its format.
    pub fn to_client(&self) -> Bytes {
        match self {
            LoginError::Refused { raw, .. } => raw.clone(),
            other => {
                ErrorResponse::new("FATAL", "08006", format!("postern agent: {other}")).encode()
            }
        }
    }
}

/// Logs in on `stream` with `login`, sending `parameters` as the startup.
pub async fn log_in(
    stream: &mut DbStream,
    parameters: Vec<(String, String)>,
    login: &DbLogin,
) -> Result<ServerHello, LoginError> {
    stream
        .write_all(&StartupMessage::new(parameters).encode())
        .await?;
    stream.flush().await?;
    let password = login.password.as_ref().map(|p| p.expose().to_owned());
    let mut auth = Login::new(login.user.clone(), password);
    let mut decoder = BackendDecoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(1024);
    let mut hello = ServerHello {
        messages: Vec::new(),
        key: None,
        ready: Bytes::new(),
    };
    let mut authenticated = false;
    loop {
        let Some(message) = decoder.decode(&mut buf)? else {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the database closed the connection",
                )
                .into());
            }
            continue;
        };
        match message.type_byte() {
            Some(b'R') if !authenticated => {
                let request: Authentication = message.parse()?;
                match auth.on_authentication(&request)? {
                    LoginStep::Send(bytes) => {
                        stream.write_all(&bytes).await?;
                        stream.flush().await?;
                    }
                    LoginStep::Wait => {}
                    LoginStep::Authenticated => authenticated = true,
                }
            }
            Some(b'E') => {
                let error: ErrorResponse = message.parse()?;
                return Err(LoginError::Refused {
                    message: error.message().unwrap_or("").to_owned(),
                    raw: message.into_raw(),
                });
            }
            // Only a reply to options we never send.
            Some(b'v') => {}
            Some(b'N') => hello.messages.push(message.into_raw()),
            Some(b'S') if authenticated => hello.messages.push(message.into_raw()),
            Some(b'K') if authenticated => hello.key = Some(message.parse()?),
            Some(b'Z') if authenticated => {
                hello.ready = message.into_raw();
                return Ok(hello);
            }
            Some(other) => return Err(LoginError::Unexpected(other as char)),
            None => return Err(LoginError::Unexpected('?')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> StartupMessage {
        StartupMessage::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn login() -> DbLogin {
        DbLogin {
            user: "app".into(),
            password: None,
        }
    }

    #[test]
    fn the_agent_logs_in_as_itself_and_tags_the_person() {
        let plan = StartupPlan {
            database: None,
            read_only: true,
            person: "alice".into(),
        };
        let client = startup(&[
            ("user", "alice"),
            ("database", "orders"),
            ("application_name", "psql"),
            ("options", "-c default_transaction_read_only=off"),
            ("search_path", "evil"),
            ("DateStyle", "ISO"),
        ]);
        let params = server_parameters(&client, &login(), &plan).unwrap();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("user"), Some("app"));
        assert_eq!(get("database"), Some("orders"));
        assert_eq!(get("application_name"), Some("psql (postern:alice)"));
        assert_eq!(get("default_transaction_read_only"), Some("on"));
        assert_eq!(get("DateStyle"), Some("ISO"));
        assert_eq!(get("options"), None);
        assert_eq!(get("search_path"), None);

        let pinned = StartupPlan {
            database: Some("reports".into()),
            read_only: false,
            person: "bob".into(),
        };
        let params = server_parameters(&startup(&[("user", "bob")]), &login(), &pinned).unwrap();
        assert!(params.contains(&("database".into(), "reports".into())));
        assert!(params.contains(&("application_name".into(), "postern:bob".into())));
        assert!(
            !params
                .iter()
                .any(|(k, _)| k == "default_transaction_read_only")
        );

        let refused = server_parameters(
            &startup(&[("user", "x"), ("replication", "database")]),
            &login(),
            &pinned,
        )
        .unwrap_err();
        assert_eq!(refused.code(), Some("42501"));
    }
}
