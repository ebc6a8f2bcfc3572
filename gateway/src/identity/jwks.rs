//! The issuer's signing keys: found through OIDC discovery, fetched from its
//! JWKS and cached. An unknown `kid` fetches the JWKS again (key rotation),
//! but never more often than the cooldown allows, so a flood of tokens with
//! made-up key ids cannot hammer the identity provider.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::keys::{KeySet, Lookup, PublishedKey, parse_jwks};
use super::oidc::TokenError;

/// Keys older than this are fetched again on the next use (a key the issuer
/// withdrew stops being trusted within this time).
pub const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);
/// While the issuer cannot be reached, keys are used for this long after
/// their last successful fetch; after that, verification fails closed.
pub const SERVE_STALE_FOR: Duration = Duration::from_secs(60 * 60);
/// Discovery documents and key sets larger than this are refused.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] postern_tunnel::tls::TlsError),
    #[error("cannot build the HTTPS client: {0}")]
    Client(reqwest::Error),
    #[error(transparent)]
    Get(#[from] crate::bounded_get::GetError),
    #[error("{url} is not a valid {what}: {source}")]
    Parse {
        url: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the discovery document names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document's jwks_uri {0:?} is not https like the issuer")]
    InsecureJwksUri(String),
    #[error("the issuer's JWKS has no usable signing key")]
    NoUsableKeys,
    #[error(
        "the last attempt to fetch the issuer's keys failed {0:?} ago; waiting before the next"
    )]
    CoolingDown(Duration),
}

#[derive(Debug, Default)]
struct FetchState {
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

/// The issuer's keys, fetched when first needed.
#[derive(Debug)]
pub struct JwksCache {
    issuer: String,
    http: reqwest::Client,
    cooldown: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching: concurrent misses wait for one fetch.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl JwksCache {
    pub fn new(issuer: String, cooldown: Duration) -> Result<Self, JwksError> {
        Ok(Self {
            http: http_client()?,
            issuer,
            cooldown,
            keys: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key that checks a token with this `kid` and algorithm.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, TokenError> {
        let cached = self.cached();
        if let Some(set) = &cached
            && set.fetched.elapsed() < REFRESH_AFTER
            && let Lookup::Found(key) = set.lookup(kid, alg)
        {
            return Ok(key);
        }
        let mut state = self.fetch.lock().await;
        // Another request may have fetched while this one waited.
        let cached = self.cached();
        if let Some(set) = &cached
            && set.fetched.elapsed() < REFRESH_AFTER
            && let Lookup::Found(key) = set.lookup(kid, alg)
        {
            return Ok(key);
        }
        let cooling = state
            .last_attempt
            .map(|at| at.elapsed())
            .filter(|elapsed| *elapsed < self.cooldown);
        let fresh = match cooling {
            Some(elapsed) => Err(JwksError::CoolingDown(elapsed)),
            None => {
                state.last_attempt = Some(Instant::now());
                match self.fetch_keys(&mut state).await {
                    Ok(keys) => {
                        let set = Arc::new(KeySet {
                            keys,
                            fetched: Instant::now(),
                        });
                        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(set.clone());
                        Ok(set)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, issuer = %self.issuer, "cannot fetch the issuer's keys");
                        // The next attempt discovers again: the JWKS may have moved.
                        state.jwks_uri = None;
                        Err(e)
                    }
                }
            }
        };
        drop(state);
        let set = match (fresh, cached) {
            (Ok(set), _) => set,
            // Cooling down, or the issuer is unreachable: the keys in hand
            // still serve, for a bounded time.
            (Err(_), Some(set)) if set.fetched.elapsed() < SERVE_STALE_FOR => set,
            (Err(e), _) => return Err(TokenError::Unavailable(e)),
        };
        match set.lookup(kid, alg) {
            Lookup::Found(key) => Ok(key),
            Lookup::Mismatch => Err(TokenError::KeyMismatch {
                kid: kid.map(str::to_owned),
                alg,
            }),
            Lookup::Missing => Err(TokenError::UnknownKeyId(kid.map(str::to_owned))),
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<Vec<PublishedKey>, JwksError> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let bytes = get_limited(&self.http, &jwks_uri).await?;
        parse_jwks(&bytes, &jwks_uri)
    }

    async fn discover(&self) -> Result<String, JwksError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = discovery_url(&self.issuer);
        let bytes = get_limited(&self.http, &url).await?;
        let document: Discovery =
            serde_json::from_slice(&bytes).map_err(|source| JwksError::Parse {
                url: url.clone(),
                what: "OIDC discovery document",
                source,
            })?;
        if document.issuer != self.issuer {
            return Err(JwksError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: document.issuer,
            });
        }
        if self.issuer.starts_with("https://") && !document.jwks_uri.starts_with("https://") {
            return Err(JwksError::InsecureJwksUri(document.jwks_uri));
        }
        Ok(document.jwks_uri)
    }
}

pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

fn http_client() -> Result<reqwest::Client, JwksError> {
    let mut tls = postern_tunnel::tls::client_config(None)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(JwksError::Client)
}

/// GET `url`, refusing a non-success status or a body over [`MAX_DOCUMENT`].
async fn get_limited(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, JwksError> {
    Ok(crate::bounded_get::get_bounded(http, url, MAX_DOCUMENT).await?)
}
