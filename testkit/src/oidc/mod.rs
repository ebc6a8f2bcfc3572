//! A local OIDC issuer stand-in: a real HTTP server on 127.0.0.1:0 serving
//! discovery and a JWKS, signing tokens with whatever claims and header a test
//! asks for, and answering the OAuth flows `postern login` uses (device
//! authorization, authorization code with PKCE, refresh).

mod keys;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use keys::{SigningKey, UNPUBLISHED_RSA};

pub const DEFAULT_AUDIENCE: &str = "postern";
pub const DEFAULT_CLIENT_ID: &str = "postern-cli";

pub(crate) struct State {
    pub issuer: String,
    pub audience: String,
    pub client_id: String,
    /// Published keys; the current RS256 key is `rsa_current`.
    pub keys: Vec<SigningKey>,
    pub rsa_current: usize,
    pub es256: usize,
    pub rotations: usize,
    pub access_token_lifetime: Duration,
    pub device_interval: u64,
    pub devices: HashMap<String, server::Device>,
    pub codes: HashMap<String, server::AuthCode>,
    pub refresh_tokens: HashMap<String, server::Grant>,
    /// Claims the browser flow logs in with, and device logins when set.
    pub auto_approve: Option<Value>,
    pub refreshes: usize,
    pub jwks_fetches: usize,
    /// Every endpoint answers 503 (an identity provider that is down).
    pub down: bool,
}

/// The stand-in. Dropping it stops accepting connections.
pub struct TestIssuer {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

impl TestIssuer {
    /// Audience [`DEFAULT_AUDIENCE`], client [`DEFAULT_CLIENT_ID`].
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let rsa = SigningKey::rsa(0, "rsa-1".into());
        let ec = SigningKey::p256("es-1".into());
        let state = Arc::new(Mutex::new(State {
            issuer: format!("http://{addr}"),
            audience: DEFAULT_AUDIENCE.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            keys: vec![rsa, ec],
            rsa_current: 0,
            es256: 1,
            rotations: 0,
            access_token_lifetime: Duration::from_secs(300),
            device_interval: 1,
            devices: HashMap::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            auto_approve: None,
            refreshes: 0,
            jwks_fetches: 0,
            down: false,
        }));
        let router = server::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { state, addr, task }
    }

    pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        Self::lock(&self.state)
    }

    /// `http://127.0.0.1:PORT`: the `iss` of its tokens and the discovery base.
    pub fn issuer(&self) -> String {
        self.state().issuer.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn audience(&self) -> String {
        self.state().audience.clone()
    }

    pub fn client_id(&self) -> String {
        self.state().client_id.clone()
    }

    /// The kid of the current RS256 key.
    pub fn current_kid(&self) -> String {
        let state = self.state();
        state.keys[state.rsa_current].kid.clone()
    }

    /// Valid claims for `sub`: this issuer, the audience, issued now, expiring
    /// after the access-token lifetime, an email.
    pub fn claims(&self, sub: &str) -> Value {
        let state = self.state();
        let now = now_secs();
        json!({
            "iss": state.issuer,
            "aud": state.audience,
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "iat": now,
            "nbf": now,
            "exp": now + state.access_token_lifetime.as_secs() as i64,
        })
    }

    /// Signs `claims` as they are with the current RS256 key.
    pub fn issue(&self, claims: &Value) -> String {
        let state = self.state();
        let key = &state.keys[state.rsa_current];
        sign(key.alg, Some(&key.kid), &key.encoding, claims)
    }

    /// Signs with the published ES256 (P-256) key.
    pub fn issue_es256(&self, claims: &Value) -> String {
        let state = self.state();
        let key = &state.keys[state.es256];
        sign(key.alg, Some(&key.kid), &key.encoding, claims)
    }

    /// Names the current key's kid but is signed with a key never published.
    pub fn issue_signed_by_other_key(&self, claims: &Value) -> String {
        let other = SigningKey::rsa(UNPUBLISHED_RSA, "unpublished".into());
        sign(
            Algorithm::RS256,
            Some(&self.current_kid()),
            &other.encoding,
            claims,
        )
    }

    /// Signed with the current key, but the header names `kid`.
    pub fn issue_with_kid(&self, kid: &str, claims: &Value) -> String {
        let state = self.state();
        let key = &state.keys[state.rsa_current];
        sign(key.alg, Some(kid), &key.encoding, claims)
    }

    /// `alg: none`, empty signature.
    pub fn issue_alg_none(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.current_kid()});
        format!("{}.{}.", encode_json(&header), encode_json(claims))
    }

    /// Key confusion: HS256 with the RSA public key's PEM as the HMAC secret,
    /// naming the RSA key's kid.
    pub fn issue_hs256_with_public_key(&self, claims: &Value) -> String {
        let state = self.state();
        let key = &state.keys[state.rsa_current];
        let pem = key.public_pem.expect("an RSA key");
        sign(
            Algorithm::HS256,
            Some(&key.kid),
            &EncodingKey::from_secret(pem.as_bytes()),
            claims,
        )
    }

    /// Expired an hour ago (well past any leeway).
    pub fn expired(&self, sub: &str) -> String {
        let mut claims = self.claims(sub);
        let now = now_secs();
        claims["iat"] = json!(now - 7200);
        claims["nbf"] = json!(now - 7200);
        claims["exp"] = json!(now - 3600);
        self.issue(&claims)
    }

    /// Valid only from an hour from now.
    pub fn not_yet_valid(&self, sub: &str) -> String {
        let mut claims = self.claims(sub);
        claims["nbf"] = json!(now_secs() + 3600);
        claims["exp"] = json!(now_secs() + 7200);
        self.issue(&claims)
    }

    /// A new RS256 key with a new kid becomes current; the old one stays in the
    /// JWKS only if `keep_old`. Returns the new kid.
    pub fn rotate_key(&self, keep_old: bool) -> String {
        let mut state = self.state();
        state.rotations += 1;
        let fixture = state.rotations % 2; // fixtures 0 and 1; 2 is never published
        let kid = format!("rsa-{}", state.rotations + 1);
        let old = state.rsa_current;
        state.keys.push(SigningKey::rsa(fixture, kid.clone()));
        state.rsa_current = state.keys.len() - 1;
        if !keep_old {
            state.keys.remove(old);
            state.rsa_current -= 1;
            if state.es256 > old {
                state.es256 -= 1;
            }
        }
        kid
    }

    /// How long access tokens from the OAuth endpoints live.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.state().access_token_lifetime = lifetime;
    }

    /// The device flow's polling interval in seconds (default 1).
    pub fn set_device_interval(&self, seconds: u64) {
        self.state().device_interval = seconds;
    }

    /// Logs in device and browser flows at once with these claims (over the
    /// defaults for their `sub`); `None` waits for [`Self::approve_device`].
    pub fn set_auto_approve(&self, claims: Option<Value>) {
        self.state().auto_approve = claims;
    }

    /// Approves the pending device login with this user code; false if none.
    pub fn approve_device(&self, user_code: &str, claims: Value) -> bool {
        let mut state = self.state();
        match state
            .devices
            .values_mut()
            .find(|d| d.user_code == user_code)
        {
            Some(device) => {
                device.approved = Some(claims);
                true
            }
            None => false,
        }
    }

    /// The user codes of device logins not yet approved.
    pub fn pending_user_codes(&self) -> Vec<String> {
        self.state()
            .devices
            .values()
            .filter(|d| d.approved.is_none())
            .map(|d| d.user_code.clone())
            .collect()
    }

    /// How many `refresh_token` grants succeeded.
    pub fn refresh_count(&self) -> usize {
        self.state().refreshes
    }

    /// How many times the JWKS was served.
    pub fn jwks_fetches(&self) -> usize {
        self.state().jwks_fetches
    }

    /// Every refresh token stops working (a session revoked at the IdP).
    pub fn revoke_refresh_tokens(&self) {
        self.state().refresh_tokens.clear();
    }

    /// Every endpoint answers 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Base64url of a header or payload (for tests that build tokens by hand).
    pub fn encode_segment(value: &Value) -> String {
        encode_json(value)
    }

    /// The token with its payload changed (`sub` and `groups` set to an
    /// attacker's wishes), the signature kept.
    pub fn tamper(token: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWT");
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
        let mut claims: Value = serde_json::from_slice(&payload).expect("JSON payload");
        claims["sub"] = json!("mallory");
        claims["groups"] = json!(["admins"]);
        let forged = encode_json(&claims);
        parts[1] = &forged;
        parts.join(".")
    }
}

fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signing")
}
