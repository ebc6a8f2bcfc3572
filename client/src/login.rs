//! `postern login`, and keeping an OIDC login fresh: before each call to the
//! gateway an access token that expires within [`REFRESH_MARGIN`] is renewed
//! with the refresh token and the config file saved again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_tunnel::Secret;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::api::{ApiClient, ApiError};
use crate::config::{ConfigError, Login, OidcSession};
use crate::loopback::{CALLBACK_PATH, CallbackError, wait_for_code};
use crate::oauth::{self, OAuthError, Pkce, TokenSet};

/// Tokens expiring sooner than this are renewed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How long `--browser` waits for the browser to come back.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "{gateway} offers no single sign-on: log in with an API token, `postern login {gateway} --token TOKEN`"
    )]
    NoOidc { gateway: String },
    #[error("{gateway} advertises no MFA login (POSTERN_OIDC_MFA_ACR is not set on the gateway)")]
    NoMfa { gateway: String },
    #[error(
        "your login to {gateway} has expired and cannot be renewed ({reason}): run `postern login {gateway}{}` again",
        mfa_flag(.mfa)
    )]
    Expired {
        gateway: String,
        mfa: bool,
        reason: String,
    },
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on 127.0.0.1 for the browser's answer: {0}")]
    Listen(std::io::Error),
}

fn mfa_flag(mfa: &bool) -> &'static str {
    if *mfa { " --mfa" } else { "" }
}

/// What `postern login` was asked to do.
pub struct LoginRequest {
    pub gateway_url: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub browser: bool,
    pub mfa: bool,
}

/// The gateway's `GET /v1/auth/config`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    pub oidc: Option<AdvertisedOidc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdvertisedOidc {
    pub issuer: String,
    pub client_id: String,
    pub scopes: String,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub mfa_acr: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The claims of a JWT, read without checking them: only to show a name and
/// to learn an expiry the token endpoint did not state. The gateway verifies.
pub fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The bearer the gateway gets: the access token if it is a JWT, else (an
/// IdP whose access tokens are opaque) the ID token.
fn bearer_and_expiry(tokens: &TokenSet) -> (Secret, Option<i64>) {
    let is_jwt = |t: &Secret| unverified_claims(t.expose()).is_some();
    let bearer = match (&tokens.id_token, is_jwt(&tokens.access_token)) {
        (Some(id), false) if is_jwt(id) => id.clone(),
        _ => tokens.access_token.clone(),
    };
    let from_claims = unverified_claims(bearer.expose())
        .and_then(|c| c.get("exp").and_then(Value::as_f64))
        .map(|exp| (exp * 1000.0) as i64);
    let expires = match tokens.expires_in {
        Some(seconds) if bearer == tokens.access_token => Some(now_ms() + seconds as i64 * 1000),
        _ => from_claims,
    };
    (bearer, expires)
}

fn apply(login: &mut Login, tokens: TokenSet) {
    let (bearer, expires) = bearer_and_expiry(&tokens);
    login.token = bearer;
    if let Some(session) = &mut login.oidc {
        session.expires_at_ms = expires;
        // Without a new refresh token (no rotation), the old one still works.
        if let Some(refresh) = tokens.refresh_token {
            session.refresh_token = Some(refresh);
        }
    }
}

fn needs_refresh(login: &Login) -> bool {
    login
        .oidc
        .as_ref()
        .and_then(|s| s.expires_at_ms)
        .is_some_and(|expires| expires - now_ms() < REFRESH_MARGIN.as_millis() as i64)
}

/// The login with a token good for at least [`REFRESH_MARGIN`], renewed (and
/// saved) if needed.
pub async fn fresh(mut login: Login) -> Result<Login, LoginError> {
    if !needs_refresh(&login) {
        return Ok(login);
    }
    let session = login
        .oidc
        .clone()
        .expect("needs_refresh implies an OIDC login");
    let gateway = login.gateway_url.clone();
    let expired = |reason: String| LoginError::Expired {
        gateway: gateway.clone(),
        mfa: session.mfa,
        reason,
    };
    let Some(refresh_token) = &session.refresh_token else {
        return Err(expired(
            "the identity provider gave no refresh token".into(),
        ));
    };
    let http = oauth::http_client()?;
    match oauth::refresh(
        &http,
        &session.token_endpoint,
        &session.client_id,
        refresh_token,
    )
    .await
    {
        Ok(tokens) => {
            apply(&mut login, tokens);
            login.save_default()?;
            tracing::debug!("access token renewed");
            Ok(login)
        }
        Err(e) => {
            // Another postern may have renewed it first (refresh tokens that
            // work once): its saved login is as good.
            if let Ok(saved) = Login::load()
                && saved.token != login.token
                && !needs_refresh(&saved)
            {
                return Ok(saved);
            }
            Err(expired(e.to_string()))
        }
    }
}

/// Bearer tokens for the sessions of one `postern connect`, renewed as they
/// near expiry (sessions opened hours later still get a valid one).
pub struct Tokens {
    login: tokio::sync::Mutex<Login>,
}

impl Tokens {
    pub fn new(login: Login) -> Arc<Self> {
        Arc::new(Self {
            login: tokio::sync::Mutex::new(login),
        })
    }

    pub async fn bearer(&self) -> Result<Secret, LoginError> {
        let mut login = self.login.lock().await;
        if needs_refresh(&login) {
            *login = fresh(login.clone()).await?;
        }
        Ok(login.token.clone())
    }
}

pub async fn run(request: LoginRequest) -> Result<(), LoginError> {
    let gateway_url = request.gateway_url.trim_end_matches('/').to_owned();
    let ca_cert = request
        .ca_cert
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let mut login = Login {
        gateway_url: gateway_url.clone(),
        token: Secret::default(),
        ca_cert,
        oidc: None,
    };
    if let Some(token) = request.token {
        login.token = token.into();
        let me: Value = ApiClient::new(login.clone())?.get("/v1/whoami").await?;
        let path = login.save_default()?;
        println!(
            "Logged in to {} as {} ({}). Saved to {}.",
            login.gateway_url,
            me["user"].as_str().unwrap_or("?"),
            me["role"].as_str().unwrap_or("?"),
            path.display()
        );
        return Ok(());
    }
    let config: AuthConfig = match ApiClient::new(login.clone())?.get("/v1/auth/config").await {
        Ok(config) => config,
        // A gateway from before OIDC logins.
        Err(ApiError::Refused { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
            AuthConfig { oidc: None }
        }
        Err(e) => return Err(e.into()),
    };
    let Some(oidc) = config.oidc else {
        return Err(LoginError::NoOidc {
            gateway: gateway_url,
        });
    };
    let acr = match (request.mfa, &oidc.mfa_acr) {
        (false, _) => None,
        (true, Some(acr)) => Some(acr.as_str()),
        (true, None) => {
            return Err(LoginError::NoMfa {
                gateway: gateway_url,
            });
        }
    };
    let http = oauth::http_client()?;
    let endpoints = oauth::discover(&http, &oidc.issuer).await?;
    let tokens = if request.browser {
        browser_flow(&http, &endpoints, &oidc, acr).await?
    } else {
        let device =
            oauth::start_device(&http, &endpoints, &oidc.client_id, &oidc.scopes, acr).await?;
        println!(
            "To log in, open {} and enter the code {}",
            device.verification_uri, device.user_code
        );
        if let Some(complete) = &device.verification_uri_complete {
            println!("  (or open {complete})");
        }
        println!("Waiting for the identity provider…");
        oauth::poll_device(&http, &endpoints, &oidc.client_id, &device).await?
    };
    login.oidc = Some(OidcSession {
        issuer: oidc.issuer.clone(),
        client_id: oidc.client_id.clone(),
        token_endpoint: endpoints.token_endpoint.clone(),
        refresh_token: None,
        expires_at_ms: None,
        mfa: request.mfa,
    });
    apply(&mut login, tokens);
    // The gateway checks the token as it will on every call: a refusal here
    // (wrong audience, unknown issuer) fails the login, and nothing is saved.
    let me: Value = ApiClient::new(login.clone())?.get("/v1/whoami").await?;
    let path = login.save_default()?;
    let claims = unverified_claims(login.token.expose()).unwrap_or_default();
    let name = ["email", "preferred_username", "sub"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .unwrap_or("?");
    println!(
        "Logged in to {} as {name} through {}. Saved to {}.",
        login.gateway_url,
        oidc.issuer,
        path.display()
    );
    println!(
        "The gateway knows you as {} (groups: {}; MFA: {}).",
        me["user"].as_str().unwrap_or("?"),
        me["groups"]
            .as_array()
            .map(|g| g
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "none".into()),
        if me["mfa"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        },
    );
    Ok(())
}

async fn browser_flow(
    http: &reqwest::Client,
    endpoints: &oauth::Endpoints,
    oidc: &AdvertisedOidc,
    acr: Option<&str>,
) -> Result<TokenSet, LoginError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(LoginError::Listen)?;
    let port = listener.local_addr().map_err(LoginError::Listen)?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    let state = oauth::random_token(16);
    let pkce = Pkce::new();
    let url = oauth::authorization_url(
        endpoints,
        &oidc.client_id,
        &oidc.scopes,
        &redirect_uri,
        &state,
        &pkce,
        acr,
    )?;
    println!("Open this URL in a browser on this computer to log in:");
    println!("  {url}");
    println!("Waiting for the identity provider…");
    let code = wait_for_code(listener, state, BROWSER_TIMEOUT).await?;
    Ok(oauth::exchange_code(
        http,
        &endpoints.token_endpoint,
        &oidc.client_id,
        &code,
        &redirect_uri,
        &pkce,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> Secret {
        Secret::new(format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims)
        ))
    }

    #[test]
    fn the_bearer_is_the_jwt_and_expiry_is_known() {
        let tokens = TokenSet {
            access_token: jwt(r#"{"exp": 2000000000}"#),
            refresh_token: None,
            id_token: None,
            expires_in: None,
        };
        assert_eq!(
            bearer_and_expiry(&tokens),
            (tokens.access_token.clone(), Some(2_000_000_000_000))
        );
        let opaque = TokenSet {
            access_token: Secret::new("ya29.opaque"),
            refresh_token: None,
            id_token: Some(jwt(r#"{"exp": 1}"#)),
            expires_in: Some(3600),
        };
        let (bearer, expires) = bearer_and_expiry(&opaque);
        assert_eq!(bearer, opaque.id_token.clone().unwrap());
        assert_eq!(expires, Some(1000), "the ID token's own expiry");
    }
}
