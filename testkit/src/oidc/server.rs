//! The stand-in's HTTP endpoints: discovery, JWKS, device authorization,
//! authorization (PKCE S256, answered at once as if the person had logged in)
//! and the token endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{State, TestIssuer, now_secs, sign};

type Shared = Arc<Mutex<State>>;

pub(crate) struct Device {
    pub user_code: String,
    pub acr: Option<String>,
    pub approved: Option<Value>,
}

pub(crate) struct AuthCode {
    claims: Value,
    acr: Option<String>,
    challenge: String,
    redirect_uri: String,
    client_id: String,
}

/// What a refresh token stands for: the login it continues.
pub(crate) struct Grant {
    claims: Value,
    acr: Option<String>,
}

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/device", post(device_authorization))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(state)
}

fn random(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "identity provider down\n").into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn discovery(Extract(state): Extract<Shared>) -> Response {
    let state = TestIssuer::lock(&state);
    if state.down {
        return unavailable();
    }
    let base = &state.issuer;
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/jwks"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "device_authorization_endpoint": format!("{base}/device"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(Extract(state): Extract<Shared>) -> Response {
    let mut state = TestIssuer::lock(&state);
    if state.down {
        return unavailable();
    }
    state.jwks_fetches += 1;
    let keys: Vec<Value> = state.keys.iter().map(|k| k.jwk.clone()).collect();
    Json(json!({ "keys": keys })).into_response()
}

fn acr_of(form: &HashMap<String, String>) -> Option<String> {
    form.get("acr_values")
        .and_then(|v| v.split(' ').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn device_authorization(
    Extract(state): Extract<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = TestIssuer::lock(&state);
    if state.down {
        return unavailable();
    }
    if form.get("client_id") != Some(&state.client_id) {
        return oauth_error("invalid_client", "unknown client_id");
    }
    let device_code = random(24);
    let letters: String = (0..8)
        .map(|_| (b'A' + rand::rng().random_range(0..26u8)) as char)
        .collect();
    let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
    let approved = state.auto_approve.clone();
    state.devices.insert(
        device_code.clone(),
        Device {
            user_code: user_code.clone(),
            acr: acr_of(&form),
            approved,
        },
    );
    let verification_uri = format!("{}/device/verify", state.issuer);
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": 600,
        "interval": state.device_interval,
    }))
    .into_response()
}

/// Answers as if the person had logged in: a redirect back to the loopback
/// `redirect_uri` with a code and the state.
async fn authorize(
    Extract(state): Extract<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = TestIssuer::lock(&state);
    if state.down {
        return unavailable();
    }
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    let redirect_uri = param("redirect_uri");
    let loopback = redirect_uri.starts_with("http://127.0.0.1:")
        || redirect_uri.starts_with("http://localhost:")
        || redirect_uri.starts_with("http://[::1]:");
    if param("response_type") != "code" || param("client_id") != state.client_id || !loopback {
        return (StatusCode::BAD_REQUEST, "bad authorization request\n").into_response();
    }
    if param("code_challenge_method") != "S256" || param("code_challenge").is_empty() {
        return (StatusCode::BAD_REQUEST, "PKCE S256 is required\n").into_response();
    }
    let Some(claims) = state.auto_approve.clone() else {
        return (
            StatusCode::FORBIDDEN,
            "no login configured: set_auto_approve\n",
        )
            .into_response();
    };
    let code = random(24);
    state.codes.insert(
        code.clone(),
        AuthCode {
            claims,
            acr: acr_of(&query),
            challenge: param("code_challenge"),
            redirect_uri: redirect_uri.clone(),
            client_id: param("client_id"),
        },
    );
    let mut location = url::Url::parse(&redirect_uri).expect("a loopback URL");
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state"));
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn token(
    Extract(shared): Extract<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = TestIssuer::lock(&shared);
    if state.down {
        return unavailable();
    }
    let param = |name: &str| form.get(name).cloned().unwrap_or_default();
    if param("client_id") != state.client_id {
        return oauth_error("invalid_client", "unknown client_id");
    }
    let (claims, acr, refreshed) = match param("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let device_code = param("device_code");
            let Some(device) = state.devices.get(&device_code) else {
                return oauth_error("expired_token", "unknown or used device code");
            };
            let Some(claims) = device.approved.clone() else {
                return oauth_error("authorization_pending", "waiting for the person to approve");
            };
            let acr = device.acr.clone();
            state.devices.remove(&device_code);
            (claims, acr, false)
        }
        "authorization_code" => {
            let Some(code) = state.codes.remove(&param("code")) else {
                return oauth_error("invalid_grant", "unknown or used code");
            };
            let verifier = param("code_verifier");
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if verifier.is_empty() || challenge != code.challenge {
                return oauth_error("invalid_grant", "PKCE verification failed");
            }
            if param("redirect_uri") != code.redirect_uri || param("client_id") != code.client_id {
                return oauth_error("invalid_grant", "redirect_uri or client_id differ");
            }
            (code.claims, code.acr, false)
        }
        "refresh_token" => {
            // Rotation: each refresh token works once.
            let Some(grant) = state.refresh_tokens.remove(&param("refresh_token")) else {
                return oauth_error("invalid_grant", "unknown, used or revoked refresh token");
            };
            (grant.claims, grant.acr, true)
        }
        other => return oauth_error("unsupported_grant_type", other),
    };
    if refreshed {
        state.refreshes += 1;
    }
    let lifetime = state.access_token_lifetime.as_secs() as i64;
    let now = now_secs();
    let sub = claims["sub"].as_str().unwrap_or("someone").to_owned();
    let mut access = json!({
        "iss": state.issuer, "aud": state.audience, "sub": sub, "azp": state.client_id,
        "email": format!("{sub}@example.com"), "iat": now, "nbf": now, "exp": now + lifetime,
        "jti": random(12),
    });
    if let Some(acr) = &acr {
        access["amr"] = json!(["mfa", "otp"]);
        access["acr"] = json!(acr);
    }
    for (name, value) in claims.as_object().into_iter().flatten() {
        access[name] = value.clone();
    }
    let mut id_token = access.clone();
    id_token["aud"] = json!(state.client_id);
    let key = &state.keys[state.rsa_current];
    let access_token = sign(key.alg, Some(&key.kid), &key.encoding, &access);
    let id_token = sign(key.alg, Some(&key.kid), &key.encoding, &id_token);
    let refresh_token = random(32);
    state
        .refresh_tokens
        .insert(refresh_token.clone(), Grant { claims, acr });
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "refresh_token": refresh_token,
        "id_token": id_token,
        "scope": "openid profile email offline_access",
    }))
    .into_response()
}
