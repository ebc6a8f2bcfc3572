//! Entry points for fuzzing (`tunnel/fuzz`, run with `cargo fuzz`), also run
//! over a seeded corpus by the unit tests so they cannot rot.

use bytes::Bytes;
use prost::Message;
use tokio::io::AsyncReadExt;

use crate::FrameStream;
use crate::proto::{Frame, frame::Kind};
use crate::stream::outgoing_channel;

/// Splits `data` into messages (a length byte, then that many bytes), decodes
/// each as a `Frame` the way the gRPC layer would, feeds the decoded frames to
/// a `FrameStream` and reads it to the end. Must never panic; bytes delivered
/// must be exactly the in-order data payloads up to the first fault.
/// Returns how many payload bytes were delivered.
pub fn frame_stream(data: &[u8]) -> usize {
    let mut frames = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (message, tail) = tail.split_at(len);
        rest = tail;
        match Frame::decode(message) {
            Ok(frame) => frames.push(frame),
            Err(_) => break,
        }
    }
    let expected = in_order_payload(&frames);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // Keep the receiver alive so acks can be queued, as on a live stream.
        let (out, _acks) = outgoing_channel();
        let incoming = tokio_stream::iter(frames.into_iter().map(Ok::<_, tonic::Status>));
        let mut stream = FrameStream::new(incoming, out, None);
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received).await;
        assert!(
            expected.starts_with(&received),
            "delivered bytes that were not sent in order"
        );
        received.len()
    })
}

/// The payload bytes a correct reader may deliver: contiguous data frames
/// from offset zero until a close or a gap.
fn in_order_payload(frames: &[Frame]) -> Vec<u8> {
    let mut payload = Vec::new();
    for frame in frames {
        match &frame.kind {
            Some(Kind::Data(data)) if data.offset == payload.len() as u64 => {
                payload.extend_from_slice(&data.payload)
            }
            Some(Kind::Data(_)) | Some(Kind::Close(_)) => break,
            _ => {}
        }
    }
    payload
}

/// Treats `data` as a relay envelope body that carries a valid signature (as
/// a replica holding the secret could send), so the fuzzer reaches the decoder
/// behind the MAC; raw `data` is also opened as a whole message. Must never
/// panic. Returns whether the signed body decoded.
pub fn relay_message(data: &[u8]) -> bool {
    use std::time::SystemTime;
    let key = crate::peer::PeerKey::new(&crate::Secret::new("fuzz-secret".repeat(4)));
    let _ = crate::relay::open(&key, data, SystemTime::now());
    let mut message = b"PR1".to_vec();
    message.extend_from_slice(key.tag(data).as_ref());
    message.extend_from_slice(data);
    // A zero timestamp is stale: check at the envelope's own time as well.
    let at = match crate::proto::RelayEnvelope::decode(data) {
        Ok(envelope) => {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(envelope.sent_at_ms)
        }
        Err(_) => SystemTime::now(),
    };
    crate::relay::open(&key, &message, at).is_ok()
}

/// A seeded input: encoded frames with mostly valid and sometimes wrong offsets,
/// then random bytes.
pub fn seeded_input(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut input = Vec::new();
    let mut offset = 0u64;
    for _ in 0..(next() % 8) {
        let frame = match next() % 5 {
            0 => crate::frame::ack(next() % 1000),
            1 => crate::frame::keepalive(),
            2 if next() % 4 == 0 => crate::frame::close(Some("x".into())),
            _ => {
                let len = (next() % 40) as usize;
                let payload = Bytes::from((0..len).map(|_| next() as u8).collect::<Vec<_>>());
                let at = if next() % 6 == 0 { offset + 1 } else { offset };
                offset += len as u64;
                crate::frame::data(at, payload)
            }
        };
        let encoded = frame.encode_to_vec();
        input.push(encoded.len().min(255) as u8);
        input.extend_from_slice(&encoded[..encoded.len().min(255)]);
    }
    for _ in 0..(next() % 16) {
        input.push(next() as u8);
    }
    input
}

/// Feeds `data[1..]`, a gRPC message stream, to a [`crate::wire::Deframer`]
/// in chunks of `data[0] + 1` bytes. Every frame decoded must encode again
/// (with [`crate::wire::encode`]) to bytes that decode to the same frame.
/// Must never panic. Returns how many frames decoded.
pub fn grpc_frames(data: &[u8]) -> usize {
    let Some((&chunk, stream)) = data.split_first() else {
        return 0;
    };
    let mut deframer = crate::wire::Deframer::default();
    let mut decoded = 0;
    for piece in stream.chunks(chunk as usize + 1) {
        deframer.push(Bytes::copy_from_slice(piece));
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => {
                    decoded += 1;
                    let Ok(encoded) = crate::wire::encode(frame.clone()) else {
                        continue;
                    };
                    let mut again = crate::wire::Deframer::default();
                    again.push(encoded.head);
                    again.push(encoded.payload.unwrap_or_default());
                    let round_trip = again.next_frame().ok().flatten();
                    assert_eq!(
                        round_trip.as_ref(),
                        Some(&frame),
                        "re-encoding changed a frame"
                    );
                    assert_eq!(again.buffered(), 0, "re-encoding left bytes over");
                }
                Ok(None) => break,
                Err(_) => return decoded,
            }
        }
    }
    decoded
}

/// [`seeded_input`]'s messages in gRPC framing, for [`grpc_frames`].
pub fn seeded_grpc_input(seed: u64) -> Vec<u8> {
    let raw = seeded_input(seed);
    let mut input = vec![(seed % 7) as u8 * 40];
    let mut rest = raw.as_slice();
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (message, tail) = tail.split_at(len);
        input.push(0);
        input.extend_from_slice(&(message.len() as u32).to_be_bytes());
        input.extend_from_slice(message);
        rest = tail;
    }
    input
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_stream_survives_a_seeded_corpus() {
        let delivered: usize = (0..3000)
            .map(|seed| super::frame_stream(&super::seeded_input(seed)))
            .sum();
        assert!(
            delivered > 10_000,
            "the corpus must reach the data path, delivered {delivered}"
        );
        assert_eq!(super::frame_stream(&[]), 0);
        assert_eq!(super::frame_stream(&[255; 300]), 0);
    }

    #[test]
    fn relay_messages_survive_a_seeded_corpus() {
        // Frame-shaped bytes are often valid envelopes too (field numbers overlap).
        let decoded = (0..3000)
            .filter(|&seed| super::relay_message(&super::seeded_input(seed)))
            .count();
        assert!(decoded > 0, "the corpus must reach past the decoder");
        assert!(super::relay_message(&[]));
        assert!(!super::relay_message(&[255; 300]));
    }

    #[test]
    fn grpc_frames_survive_a_seeded_corpus() {
        let decoded: usize = (0..3000)
            .map(|seed| super::grpc_frames(&super::seeded_grpc_input(seed)))
            .sum();
        assert!(
            decoded > 3000,
            "the corpus must reach the decoder, decoded {decoded}"
        );
        assert_eq!(super::grpc_frames(&[]), 0);
        assert_eq!(super::grpc_frames(&[0; 300]), 59);
        assert_eq!(super::grpc_frames(&[255; 300]), 0);
    }
}
