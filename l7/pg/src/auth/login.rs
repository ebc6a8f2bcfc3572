//! Answers the server's authentication requests for the agent's own login.

use bytes::Bytes;

use super::scram::{MECHANISM, ScramClient, ScramFinal};
use super::{AuthError, md5_password};
use crate::messages::{
    Authentication, PasswordMessage, SaslInitialResponse, SaslResponse, WireMessage,
};

/// What to do after an authentication request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send these bytes (a whole 'p' message) to the server.
    Send(Bytes),
    /// Nothing to send: wait for the server's next message.
    Wait,
    /// Authenticated: ParameterStatus, BackendKeyData and ReadyForQuery follow.
    Authenticated,
}

enum State {
    Start,
    /// SASLInitialResponse sent.
    ScramFirst(ScramClient),
    /// SASLResponse sent: the server-final message is due.
    ScramFinal(ScramFinal),
    /// SCRAM verified the server; AuthenticationOk is due.
    ScramDone,
}

/// Log in as `user` with `password` (none for trust). Feed it each
/// Authentication message the server sends.
pub struct Login {
    user: String,
    password: Option<String>,
    state: State,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Login {
    pub fn new(user: impl Into<String>, password: Option<String>) -> Self {
        Self {
            user: user.into(),
            password,
            state: State::Start,
        }
    }

    fn password(&self, method: &'static str) -> Result<&str, AuthError> {
        self.password
            .as_deref()
            .ok_or(AuthError::Unsupported(match method {
                "md5" => "md5 (no password configured)",
                "SCRAM-SHA-256" => "SCRAM-SHA-256 (no password configured)",
                _ => "password (no password configured)",
            }))
    }

    pub fn on_authentication(&mut self, request: &Authentication) -> Result<LoginStep, AuthError> {
        match (std::mem::replace(&mut self.state, State::Start), request) {
            // Trust, or SCRAM after the server proved itself.
            (State::Start | State::ScramDone, Authentication::Ok) => Ok(LoginStep::Authenticated),
            (State::Start, Authentication::CleartextPassword) => {
                let password = self.password("password")?;
                Ok(LoginStep::Send(
                    super::cleartext_password(password).encode(),
                ))
            }
            (State::Start, Authentication::Md5Password { salt }) => {
                let password = self.password("md5")?;
                let hashed = md5_password(&self.user, password, *salt);
                Ok(LoginStep::Send(
                    PasswordMessage {
                        password: Bytes::from(hashed),
                    }
                    .encode(),
                ))
            }
            (State::Start, Authentication::Sasl { mechanisms }) => {
                if !mechanisms.iter().any(|m| m == MECHANISM) {
                    return Err(AuthError::NoSupportedMechanism(mechanisms.join(", ")));
                }
                let client = ScramClient::new("", self.password(MECHANISM)?);
                let first = SaslInitialResponse {
                    mechanism: MECHANISM.into(),
                    data: Some(Bytes::from(client.client_first())),
                };
                self.state = State::ScramFirst(client);
                Ok(LoginStep::Send(first.encode()))
            }
            (State::ScramFirst(client), Authentication::SaslContinue { data }) => {
                let (client_final, last) = client.client_final(data)?;
                self.state = State::ScramFinal(last);
                Ok(LoginStep::Send(
                    SaslResponse {
                        data: Bytes::from(client_final),
                    }
                    .encode(),
                ))
            }
            (State::ScramFinal(last), Authentication::SaslFinal { data }) => {
                last.verify(data)?;
                self.state = State::ScramDone;
                // AuthenticationOk follows.
                Ok(LoginStep::Wait)
            }
            (_, Authentication::Ok) => Err(AuthError::OutOfOrder(
                "AuthenticationOk before SCRAM completed",
            )),
            (_, Authentication::KerberosV5) => Err(AuthError::Unsupported("Kerberos V5")),
            (_, Authentication::Gss | Authentication::GssContinue { .. }) => {
                Err(AuthError::Unsupported("GSSAPI"))
            }
            (_, Authentication::Sspi) => Err(AuthError::Unsupported("SSPI")),
            (_, Authentication::SaslContinue { .. }) => Err(AuthError::OutOfOrder("SASLContinue")),
            (_, Authentication::SaslFinal { .. }) => Err(AuthError::OutOfOrder("SASLFinal")),
            (_, Authentication::CleartextPassword | Authentication::Md5Password { .. }) => {
                Err(AuthError::OutOfOrder("a password request during SASL"))
            }
            (_, Authentication::Sasl { .. }) => Err(AuthError::OutOfOrder("a second SASL request")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WireMessage;

    fn sent(step: LoginStep) -> Bytes {
        match step {
            LoginStep::Send(bytes) => bytes.slice(5..),
            other => panic!("expected a message to send, got {other:?}"),
        }
    }

    #[test]
    fn trust_cleartext_and_md5() {
        let mut login = Login::new("alice", None);
        assert_eq!(
            login.on_authentication(&Authentication::Ok),
            Ok(LoginStep::Authenticated)
        );

        let mut login = Login::new("alice", Some("s3cret".into()));
        let body = sent(
            login
                .on_authentication(&Authentication::CleartextPassword)
                .unwrap(),
        );
        assert_eq!(
            &PasswordMessage::parse(body).unwrap().password[..],
            b"s3cret"
        );

        let mut login = Login::new("alice", Some("s3cret".into()));
        let body = sent(
            login
                .on_authentication(&Authentication::Md5Password { salt: *b"wxyz" })
                .unwrap(),
        );
        assert_eq!(
            &PasswordMessage::parse(body).unwrap().password[..],
            b"md51fa112f7f8c0b0cdfef5b41142e053bb"
        );
    }

    #[test]
    fn scram_must_finish_before_ok() {
        let mut login = Login::new("alice", Some("pencil".into()));
        let body = sent(
            login
                .on_authentication(&Authentication::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
                })
                .unwrap(),
        );
        let first = SaslInitialResponse::parse(body).unwrap();
        assert_eq!(first.mechanism, "SCRAM-SHA-256");
        assert!(first.data.unwrap().starts_with(b"n,,n=,r="));
        // A server that skips the proof of its own knowledge is refused.
        assert!(matches!(
            login.on_authentication(&Authentication::Ok),
            Err(AuthError::OutOfOrder(_))
        ));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let mut login = Login::new("alice", None);
        assert!(
            login
                .on_authentication(&Authentication::Md5Password { salt: [0; 4] })
                .is_err()
        );
        assert!(matches!(
            Login::new("a", Some("p".into())).on_authentication(&Authentication::Sasl {
                mechanisms: vec!["OAUTHBEARER".into()]
            }),
            Err(AuthError::NoSupportedMechanism(offered)) if offered == "OAUTHBEARER"
        ));
        assert_eq!(
            Login::new("a", None).on_authentication(&Authentication::Gss),
            Err(AuthError::Unsupported("GSSAPI"))
        );
    }
}
