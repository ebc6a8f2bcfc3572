//! Authentication between gateway replicas: short-lived peer tokens signed with
//! HMAC-SHA256 under a secret every replica shares (`POSTERN_PEER_SECRET`).
//!
//! A token reads `pst_peer.v1.<replica>.<expires unix ms>.<hex mac>`; the MAC covers
//! everything before it, so neither the replica nor the expiry can be altered.
//!
//! A key may also accept a second secret (`POSTERN_PEER_SECRET_ACCEPTED`), never
//! used to sign: that is how the secret is rotated without a moment in which
//! two live replicas refuse each other (see [`PeerKey::accepting`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

use crate::Secret;

/// Metadata naming the agent of a spliced session (`Peer.Splice`).
pub const AGENT_HEADER: &str = "x-postern-agent";
/// Shortest shared secret accepted: 256 bits written as hex.
pub const MIN_SECRET_LEN: usize = 32;
/// How long a token is valid; callers mint a fresh one well before that.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated between replicas on a token's expiry.
const MAX_SKEW: Duration = Duration::from_secs(60);
const PREFIX: &str = "pst_peer.v1.";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerAuthError {
    #[error("not a peer token")]
    Malformed,
    #[error(
        "the peer token's signature does not match (is POSTERN_PEER_SECRET the same on every replica?)"
    )]
    BadSignature,
    #[error("the peer token expired")]
    Expired,
    #[error("the peer token's lifetime is longer than allowed")]
    TooLong,
}

/// Signs and verifies peer tokens. Cheap to clone.
#[derive(Clone)]
pub struct PeerKey {
    key: hmac::Key,
    /// Verifies, never signs: the secret being rotated in or out.
    accepted: Option<hmac::Key>,
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(****)")
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl PeerKey {
    pub fn new(secret: &Secret) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
            accepted: None,
        }
    }

    /// Also accepts what `secret` signed, without signing with it. Rotating
    /// from secret A to B takes three rolling deploys, each of which leaves
    /// every pair of live replicas able to check each other: sign A accepting
    /// B; then sign B accepting A; then sign B alone.
    pub fn accepting(mut self, secret: &Secret) -> Self {
        self.accepted = Some(hmac::Key::new(
            hmac::HMAC_SHA256,
            secret.expose().as_bytes(),
        ));
        self
    }

    fn verifies(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, data, tag).is_ok()
            || self
                .accepted
                .as_ref()
                .is_some_and(|key| hmac::verify(key, data, tag).is_ok())
    }

    /// HMAC-SHA256 of `data` (relay messages are sealed with it).
    pub fn tag(&self, data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.key, data)
    }

    /// Whether `tag` is `data`'s HMAC under the secret or the accepted one,
    /// compared in constant time.
    pub fn verify_tag(&self, data: &[u8], tag: &[u8]) -> bool {
        self.verifies(data, tag)
    }

    /// A token for `replica`, valid for [`TOKEN_LIFETIME`] from `now`.
    pub fn sign(&self, replica: &str, now: SystemTime) -> Secret {
        let body = format!("{PREFIX}{replica}.{}", unix_ms(now + TOKEN_LIFETIME));
        let tag = hmac::sign(&self.key, body.as_bytes());
        Secret::new(format!("{body}.{}", hex::encode(tag.as_ref())))
    }

    /// The replica a valid token was minted for.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<String, PeerAuthError> {
        let (body, mac_hex) = token.rsplit_once('.').ok_or(PeerAuthError::Malformed)?;
        let rest = body.strip_prefix(PREFIX).ok_or(PeerAuthError::Malformed)?;
        let mac = hex::decode(mac_hex).map_err(|_| PeerAuthError::Malformed)?;
        // Signature first: nothing in an unsigned token is trusted, not even its shape.
        if !self.verifies(body.as_bytes(), &mac) {
            return Err(PeerAuthError::BadSignature);
        }
        let (replica, expires) = rest.rsplit_once('.').ok_or(PeerAuthError::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| PeerAuthError::Malformed)?;
        let now = unix_ms(now);
        if expires <= now.saturating_sub(MAX_SKEW.as_millis() as u64) {
            return Err(PeerAuthError::Expired);
        }
        if expires > now + (TOKEN_LIFETIME + MAX_SKEW).as_millis() as u64 {
            return Err(PeerAuthError::TooLong);
        }
        if replica.is_empty() {
            return Err(PeerAuthError::Malformed);
        }
        Ok(replica.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> PeerKey {
        PeerKey::new(&Secret::new(secret.to_owned()))
    }

    #[test]
    fn tokens_verify_only_with_the_same_secret_and_in_time() {
        let now = SystemTime::now();
        let signer = key("0123456789abcdef0123456789abcdef");
        let token = signer.sign("gw-a", now);
        assert_eq!(signer.verify(token.expose(), now), Ok("gw-a".into()));

        let cases: Vec<(&str, String, SystemTime, PeerAuthError)> = vec![
            (
                "other secret",
                token.expose().to_owned(),
                now,
                PeerAuthError::BadSignature,
            ),
            (
                "expired",
                token.expose().to_owned(),
                now + TOKEN_LIFETIME + MAX_SKEW + Duration::from_secs(1),
                PeerAuthError::Expired,
            ),
            (
                "replica altered",
                token.expose().replace("gw-a", "gw-b"),
                now,
                PeerAuthError::BadSignature,
            ),
            (
                "garbage",
                "Bearer xyz".into(),
                now,
                PeerAuthError::Malformed,
            ),
            (
                "no mac",
                token.expose().rsplit_once('.').unwrap().0.to_owned(),
                now,
                PeerAuthError::Malformed,
            ),
        ];
        for (name, token, at, expected) in cases {
            let verifier = if name == "other secret" {
                key("ffffffffffffffffffffffffffffffff")
            } else {
                key("0123456789abcdef0123456789abcdef")
            };
            assert_eq!(verifier.verify(&token, at), Err(expected), "{name}");
        }
    }

    #[test]
    fn a_token_minted_far_in_the_future_is_refused() {
        let signer = key("0123456789abcdef0123456789abcdef");
        let now = SystemTime::now();
        let token = signer.sign("gw-a", now + Duration::from_secs(3600));
        assert_eq!(
            signer.verify(token.expose(), now),
            Err(PeerAuthError::TooLong)
        );
    }

    #[test]
    fn an_accepted_secret_verifies_but_never_signs() {
        let now = SystemTime::now();
        let (a, b) = (
            "0123456789abcdef0123456789abcdef",
            "ffffffffffffffffffffffffffffffff",
        );
        let secret = |s: &str| Secret::new(s.to_owned());
        // The three steps of a rotation from a to b, and a replica left behind.
        let a_accepting_b = key(a).accepting(&secret(b));
        let b_accepting_a = key(b).accepting(&secret(a));
        let (only_a, only_b) = (key(a), key(b));
        let pairs: [(&str, &PeerKey, &PeerKey, bool); 6] = [
            ("before → step 1", &only_a, &a_accepting_b, true),
            ("step 1 → step 2", &a_accepting_b, &b_accepting_a, true),
            ("step 2 → step 1", &b_accepting_a, &a_accepting_b, true),
            ("step 2 → after", &b_accepting_a, &only_b, true),
            ("after → step 2", &only_b, &b_accepting_a, true),
            ("step 2 → before", &b_accepting_a, &only_a, false),
        ];
        for (name, signer, verifier, accepted) in pairs {
            let token = signer.sign("gw-a", now);
            assert_eq!(
                verifier.verify(token.expose(), now).is_ok(),
                accepted,
                "{name}: token"
            );
            let tag = signer.tag(b"relay message");
            assert_eq!(
                verifier.verify_tag(b"relay message", tag.as_ref()),
                accepted,
                "{name}: relay seal"
            );
        }
        // Signing always uses the first secret.
        let token = a_accepting_b.sign("gw-a", now);
        assert!(only_a.verify(token.expose(), now).is_ok());
        assert_eq!(
            only_b.verify(token.expose(), now),
            Err(PeerAuthError::BadSignature)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(format!("{:?}", key("secretsecret")), "PeerKey(****)");
    }
}
