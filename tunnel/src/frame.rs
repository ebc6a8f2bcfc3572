//! Frame limits and constructors.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::proto::{self, frame::Kind};

/// Largest payload one data frame may carry. Writers split larger writes.
pub const MAX_FRAME_PAYLOAD: usize = 256 * 1024;

/// Largest encoded gRPC message any endpoint accepts. Anything bigger ends
/// that one stream with `OUT_OF_RANGE` before a byte of it is buffered.
pub const MAX_MESSAGE_SIZE: usize = MAX_FRAME_PAYLOAD + 1024;

/// Receivers acknowledge after at least this many new bytes.
pub const ACK_EVERY_BYTES: u64 = 1024 * 1024;

pub fn data(offset: u64, payload: Bytes) -> proto::Frame {
    frame(Kind::Data(proto::Data { offset, payload }))
}

pub fn ack(received: u64) -> proto::Frame {
    frame(Kind::Ack(proto::Ack { received }))
}

pub fn close(error: Option<String>) -> proto::Frame {
    frame(Kind::Close(proto::Close {
        error: error.is_some(),
        reason: error.unwrap_or_default(),
    }))
}

pub fn keepalive() -> proto::Frame {
    frame(Kind::Keepalive(keepalive_body()))
}

pub fn keepalive_body() -> proto::Keepalive {
    proto::Keepalive {
        sent_at_unix_ms: unix_millis(),
    }
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn frame(kind: Kind) -> proto::Frame {
    proto::Frame { kind: Some(kind) }
}

/// Payload bytes a frame carries, for byte counters on the splice.
pub fn payload_len(frame: &proto::Frame) -> usize {
    match &frame.kind {
        Some(Kind::Data(data)) => data.payload.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn frames_round_trip_through_protobuf() {
        let frames = [
            data(42, Bytes::from_static(b"hello")),
            ack(7),
            close(None),
            close(Some("target reset".into())),
            keepalive(),
        ];
        for original in frames {
            let encoded = original.encode_to_vec();
            let decoded = proto::Frame::decode(encoded.as_slice()).unwrap();
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn a_full_data_frame_fits_the_message_limit() {
        let full = data(u64::MAX, Bytes::from(vec![0u8; MAX_FRAME_PAYLOAD]));
        assert!(full.encoded_len() <= MAX_MESSAGE_SIZE);
        assert_eq!(payload_len(&full), MAX_FRAME_PAYLOAD);
        assert_eq!(payload_len(&ack(1)), 0);
    }
}
