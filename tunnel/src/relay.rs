//! Relay mode's wire format: what one replica publishes to another's inbox in
//! the route store. A message is `PR1`, an HMAC-SHA256 tag of the encoded
//! [`RelayEnvelope`] under the peer secret, then the envelope: anyone who can
//! publish to Redis but does not hold `POSTERN_PEER_SECRET` cannot inject or
//! alter a message, and a stale one is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::frame::MAX_FRAME_PAYLOAD;
use crate::peer::PeerKey;
use crate::proto::RelayEnvelope;

const MAGIC: &[u8; 3] = b"PR1";
const TAG_LEN: usize = 32;
/// Frames coalesced into one relay message, in encoded bytes.
pub const MAX_BATCH_BYTES: usize = MAX_FRAME_PAYLOAD;
/// Largest sealed message accepted: one batch plus its last frame and headers.
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_BATCH_BYTES + 4096;
/// How old (or how far in the future, for clock skew) an envelope may be.
pub const MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayWireError {
    #[error("relay message of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("not a relay message")]
    Malformed,
    #[error(
        "relay message signature does not match (is POSTERN_PEER_SECRET the same on every replica?)"
    )]
    BadSignature,
    #[error("relay message is {0} ms out of date")]
    Stale(u64),
    #[error("relay envelope does not decode: {0}")]
    Decode(String),
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Encodes and signs `envelope`, stamping it with `now`.
pub fn seal(key: &PeerKey, mut envelope: RelayEnvelope, now: SystemTime) -> Bytes {
    envelope.sent_at_ms = unix_ms(now);
    let body = envelope.encode_to_vec();
    let tag = key.tag(&body);
    let mut message = BytesMut::with_capacity(MAGIC.len() + TAG_LEN + body.len());
    message.put_slice(MAGIC);
    message.put_slice(tag.as_ref());
    message.put_slice(&body);
    message.freeze()
}

/// Checks and decodes a message; nothing in it is trusted before the tag is.
pub fn open(
    key: &PeerKey,
    message: &[u8],
    now: SystemTime,
) -> Result<RelayEnvelope, RelayWireError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(RelayWireError::TooLarge(message.len()));
    }
    let rest = message
        .strip_prefix(MAGIC.as_slice())
        .ok_or(RelayWireError::Malformed)?;
    if rest.len() < TAG_LEN {
        return Err(RelayWireError::Malformed);
    }
    let (tag, body) = rest.split_at(TAG_LEN);
    if !key.verify_tag(body, tag) {
        return Err(RelayWireError::BadSignature);
    }
    let envelope =
        RelayEnvelope::decode(body).map_err(|e| RelayWireError::Decode(e.to_string()))?;
    let now = unix_ms(now);
    let age = now.abs_diff(envelope.sent_at_ms);
    if age > MAX_AGE.as_millis() as u64 {
        return Err(RelayWireError::Stale(age));
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::proto::relay_envelope::Kind;
    use crate::proto::{Frame, RelayData, RelayReset};

    fn key(secret: &str) -> PeerKey {
        PeerKey::new(&Secret::new(secret.to_owned()))
    }

    fn data_envelope() -> RelayEnvelope {
        RelayEnvelope {
            from_replica: "gw-a".into(),
            sent_at_ms: 0,
            kind: Some(Kind::Data(RelayData {
                stream_id: "s-1".into(),
                seq: 7,
                frames: vec![
                    crate::frame::data(0, Bytes::from_static(b"hello")),
                    Frame::default(),
                ],
                end: true,
            })),
        }
    }

    #[test]
    fn sealed_messages_round_trip() {
        let key = key("0123456789abcdef0123456789abcdef");
        let now = SystemTime::now();
        let message = seal(&key, data_envelope(), now);
        let opened = open(&key, &message, now).unwrap();
        assert_eq!(opened.sent_at_ms, unix_ms(now));
        assert_eq!(
            RelayEnvelope {
                sent_at_ms: 0,
                ..opened
            },
            data_envelope()
        );
    }

    #[test]
    fn tampered_foreign_stale_and_oversized_messages_are_refused() {
        let signer = key("0123456789abcdef0123456789abcdef");
        let now = SystemTime::now();
        let sealed = seal(&signer, data_envelope(), now).to_vec();
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let reset = RelayEnvelope {
            from_replica: "gw-a".into(),
            sent_at_ms: 0,
            kind: Some(Kind::Reset(RelayReset {
                stream_id: "s-1".into(),
                reason: "x".into(),
            })),
        };
        let cases: Vec<(&str, PeerKey, Vec<u8>, SystemTime, RelayWireError)> = vec![
            (
                "payload altered",
                signer.clone(),
                tampered,
                now,
                RelayWireError::BadSignature,
            ),
            (
                "another secret",
                key("ffffffffffffffffffffffffffffffff"),
                sealed.clone(),
                now,
                RelayWireError::BadSignature,
            ),
            (
                "replayed later",
                signer.clone(),
                seal(&signer, reset, now).to_vec(),
                now + MAX_AGE + Duration::from_secs(1),
                RelayWireError::Stale(61_000),
            ),
            (
                "no magic",
                signer.clone(),
                sealed[3..].to_vec(),
                now,
                RelayWireError::Malformed,
            ),
            (
                "truncated tag",
                signer.clone(),
                sealed[..20].to_vec(),
                now,
                RelayWireError::Malformed,
            ),
            (
                "oversized",
                signer.clone(),
                vec![0; MAX_MESSAGE_BYTES + 1],
                now,
                RelayWireError::TooLarge(MAX_MESSAGE_BYTES + 1),
            ),
        ];
        for (name, verifier, message, at, expected) in cases {
            assert_eq!(open(&verifier, &message, at), Err(expected), "{name}");
        }
    }
}
