//! Client for the gateway's HTTP/JSON API.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Login;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The gateway refused, with its own explanation.
    #[error("{message} ({code})")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("unexpected answer from the gateway ({status}): {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] postern_tunnel::tls::TlsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

pub struct ApiClient {
    http: reqwest::Client,
    login: Login,
}

impl ApiClient {
    pub fn new(login: Login) -> Result<Self, ApiError> {
        let ca = login.ca_pem()?;
        let mut tls = postern_tunnel::tls::client_config(ca.as_deref())?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| ApiError::Unreachable {
                url: login.gateway_url.clone(),
                source,
            })?;
        Ok(Self { http, login })
    }

    pub fn login(&self) -> &Login {
        &self.login
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.call::<(), serde_json::Value>(Method::DELETE, path, None)
            .await
            .map(|_| ())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{}", self.login.gateway_url.trim_end_matches('/'), path);
        let mut request = self.http.request(method, &url);
        // Empty before logging in: public routes (`/v1/auth/config`) only.
        if !self.login.token.is_empty() {
            request = request.bearer_auth(self.login.token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ApiError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ApiError::Unreachable { url, source })?;
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(bytes).map_err(|_| ApiError::Unexpected {
                status,
                body: String::from_utf8_lossy(bytes).chars().take(200).collect(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ApiError::Refused {
                status,
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(ApiError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }
}
