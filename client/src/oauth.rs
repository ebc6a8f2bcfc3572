//! The OAuth 2.0 client side of `postern login`: discovery at the issuer, the
//! device authorization grant (RFC 8628), the authorization code grant with
//! PKCE (RFC 7636), and refresh.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_tunnel::Secret;
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not the expected JSON: {source}")]
    Parse {
        url: String,
        source: serde_json::Error,
    },
    #[error("the identity provider's discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the identity provider offers no {0}")]
    Unsupported(&'static str),
    #[error("the identity provider refused: {error}{}", detail(.description))]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the login was not approved in time")]
    DeviceCodeExpired,
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] postern_tunnel::tls::TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// ` (description)` when the identity provider gave one.
pub fn detail(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// The issuer's endpoints, from `/.well-known/openid-configuration`.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// What a token endpoint answers.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct RawTokens {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// An HTTPS client for the identity provider (system roots).
pub fn http_client() -> Result<reqwest::Client, OAuthError> {
    let mut tls = postern_tunnel::tls::client_config(None)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(OAuthError::Client)
}

async fn json_response<T: DeserializeOwned>(
    url: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, OAuthError> {
    let unreachable = |source| OAuthError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let response = response.map_err(unreachable)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        if let Ok(error) = serde_json::from_slice::<RawError>(&bytes) {
            return Err(OAuthError::Refused {
                error: error.error,
                description: error.error_description,
            });
        }
        return Err(OAuthError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| OAuthError::Parse {
        url: url.to_owned(),
        source,
    })
}

pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Endpoints, OAuthError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let endpoints: Endpoints = json_response(&url, http.get(&url).send().await).await?;
    if endpoints.issuer != issuer {
        return Err(OAuthError::IssuerMismatch {
            expected: issuer.to_owned(),
            found: endpoints.issuer,
        });
    }
    Ok(endpoints)
}

async fn token_request(
    http: &reqwest::Client,
    token_endpoint: &str,
    form: &[(&str, &str)],
) -> Result<TokenSet, OAuthError> {
    let raw: RawTokens = json_response(
        token_endpoint,
        http.post(token_endpoint).form(form).send().await,
    )
    .await?;
    Ok(TokenSet {
        access_token: Secret::new(raw.access_token),
        refresh_token: raw.refresh_token.map(Secret::new),
        id_token: raw.id_token.map(Secret::new),
        expires_in: raw.expires_in,
    })
}

/// RFC 8628 §3.2: where the person approves, and with which code.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    #[serde(deserialize_with = "secret")]
    pub device_code: Secret,
    pub user_code: String,
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    #[serde(default = "default_expiry")]
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

fn default_expiry() -> u64 {
    600
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

pub async fn start_device(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    client_id: &str,
    scopes: &str,
    acr: Option<&str>,
) -> Result<DeviceAuthorization, OAuthError> {
    let url = endpoints
        .device_authorization_endpoint
        .as_deref()
        .ok_or(OAuthError::Unsupported(
            "device authorization endpoint (try `postern login --browser`)",
        ))?;
    let mut form = vec![("client_id", client_id), ("scope", scopes)];
    if let Some(acr) = acr {
        form.push(("acr_values", acr));
    }
    json_response(url, http.post(url).form(&form).send().await).await
}

/// Polls the token endpoint until the person approves, refuses, or the code expires.
pub async fn poll_device(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    client_id: &str,
    device: &DeviceAuthorization,
) -> Result<TokenSet, OAuthError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(device.expires_in);
    // RFC 8628 §3.5: 5 s unless told; an interval of 0 still waits a little.
    let mut interval =
        Duration::from_secs(device.interval.unwrap_or(5)).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() > deadline {
            return Err(OAuthError::DeviceCodeExpired);
        }
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device.device_code.expose()),
            ("client_id", client_id),
        ];
        match token_request(http, &endpoints.token_endpoint, &form).await {
            Err(OAuthError::Refused { error, .. }) if error == "authorization_pending" => {}
            Err(OAuthError::Refused { error, .. }) if error == "slow_down" => {
                interval += Duration::from_secs(5);
            }
            Err(OAuthError::Refused { error, .. }) if error == "expired_token" => {
                return Err(OAuthError::DeviceCodeExpired);
            }
            other => return other,
        }
    }
}

/// A PKCE pair: the verifier kept here, the S256 challenge sent.
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

pub fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random_token(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The URL the person opens for the authorization code flow.
pub fn authorization_url(
    endpoints: &Endpoints,
    client_id: &str,
    scopes: &str,
    redirect_uri: &str,
    state: &str,
    pkce: &Pkce,
    acr: Option<&str>,
) -> Result<String, OAuthError> {
    let base = endpoints
        .authorization_endpoint
        .as_deref()
        .ok_or(OAuthError::Unsupported("authorization endpoint"))?;
    let mut url = url::Url::parse(base)
        .map_err(|_| OAuthError::Unsupported("valid authorization endpoint URL"))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scopes)
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(acr) = acr {
            query.append_pair("acr_values", acr);
        }
    }
    Ok(url.to_string())
}

pub async fn exchange_code(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    pkce: &Pkce,
) -> Result<TokenSet, OAuthError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", pkce.verifier.expose()),
    ];
    token_request(http, token_endpoint, &form).await
}

pub async fn refresh(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    refresh_token: &Secret,
) -> Result<TokenSet, OAuthError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", client_id),
    ];
    token_request(http, token_endpoint, &form).await
}
