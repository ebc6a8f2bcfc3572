use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use prost::Message as _;
use tonic::Code;

use super::body::{FrameBody, WireFrames};
use super::*;
use crate::frame::{self, MAX_FRAME_PAYLOAD};
use crate::proto::{self, StatementAudit};

/// What tonic sends for `frame`: the prefix, then prost's encoding.
fn tonic_bytes(frame: &Frame) -> Vec<u8> {
    let message = frame.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(&message);
    out
}

fn joined(encoded: &Encoded) -> Vec<u8> {
    let mut out = encoded.head.to_vec();
    if let Some(payload) = &encoded.payload {
        out.extend_from_slice(payload);
    }
    out
}

fn samples() -> Vec<Frame> {
    let mut frames = vec![
        frame::data(0, Bytes::new()),
        frame::data(0, Bytes::from_static(b"hello")),
        frame::data(u64::MAX, Bytes::from_static(b"x")),
        frame::ack(1 << 40),
        frame::close(None),
        frame::close(Some("target reset".into())),
        frame::keepalive(),
        Frame { kind: None },
        Frame {
            kind: Some(Kind::Audit(StatementAudit {
                statement: "select 1".into(),
                outcome: "ok".into(),
                rows: 1,
                ..Default::default()
            })),
        },
    ];
    for (offset, len) in [
        (0, INLINE_PAYLOAD),
        (0, INLINE_PAYLOAD + 1),
        (7, 64 * 1024),
        (u64::MAX - 5, 200_000),
        (1 << 33, MAX_FRAME_PAYLOAD),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        frames.push(frame::data(offset, Bytes::from(payload)));
    }
    frames
}

#[test]
fn encodes_exactly_what_tonic_and_prost_send() {
    for original in samples() {
        let encoded = encode(original.clone()).unwrap();
        assert_eq!(joined(&encoded), tonic_bytes(&original), "{original:?}");
        let large = frame::payload_len(&original) > INLINE_PAYLOAD;
        assert_eq!(encoded.payload.is_some(), large);
        assert_eq!(encoded.len(), tonic_bytes(&original).len());
    }
}

#[test]
fn a_large_payload_is_sent_and_received_without_a_copy() {
    let payload = Bytes::from(vec![9u8; 100_000]);
    let encoded = encode(frame::data(3, payload.clone())).unwrap();
    assert_eq!(encoded.payload.as_ref().unwrap().as_ptr(), payload.as_ptr());

    let mut chunk = BytesMut::from(&encoded.head[..]);
    chunk.put_slice(&payload);
    let chunk = chunk.freeze();
    let mut deframer = Deframer::default();
    deframer.push(chunk.clone());
    let Some(Kind::Data(data)) = deframer.next_frame().unwrap().unwrap().kind else {
        panic!("not data");
    };
    assert_eq!(data.offset, 3);
    let inside = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
    assert!(inside.contains(&(data.payload.as_ptr() as usize)));
    assert_eq!(data.payload, payload);

    // As sent: the header in one chunk, the payload in the next.
    let mut deframer = Deframer::default();
    deframer.push(encoded.head.clone());
    deframer.push(payload.clone());
    let Some(Kind::Data(data)) = deframer.next_frame().unwrap().unwrap().kind else {
        panic!("not data");
    };
    assert_eq!(data.payload.as_ptr(), payload.as_ptr());
    assert_eq!(deframer.buffered(), 0);
}

#[test]
fn decodes_across_every_chunk_boundary() {
    let frames = samples();
    let stream: Vec<u8> = frames.iter().flat_map(tonic_bytes).collect();
    for chunk_len in [1, 2, 3, 5, 7, 4096, 65_536, 300_000, stream.len()] {
        let mut deframer = Deframer::default();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(chunk_len) {
            deframer.push(Bytes::copy_from_slice(chunk));
            while let Some(frame) = deframer.next_frame().unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames, "chunks of {chunk_len}");
        assert_eq!(deframer.buffered(), 0);
    }
}

#[test]
fn malformed_input_is_an_error_before_anything_is_buffered() {
    let cases: [(&str, Vec<u8>, Code); 4] = [
        ("compressed", vec![1, 0, 0, 0, 1, 0], Code::Internal),
        ("bad flag", vec![7, 0, 0, 0, 0], Code::Internal),
        (
            "too large",
            [
                vec![0],
                ((MAX_MESSAGE_SIZE + 1) as u32).to_be_bytes().to_vec(),
            ]
            .concat(),
            Code::OutOfRange,
        ),
        // Frame field 1 (data) claims 100 bytes, there are 2.
        (
            "bad protobuf",
            vec![0, 0, 0, 0, 4, 0x0a, 100, 1, 2],
            Code::Internal,
        ),
    ];
    for (name, input, code) in cases {
        let mut deframer = Deframer::default();
        deframer.push(Bytes::from(input));
        let err = deframer.next_frame().unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err:?}");
    }
    // A huge length is refused from its prefix alone, with nothing else sent.
    let mut deframer = Deframer::default();
    deframer.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(
        deframer.next_message().unwrap_err().code(),
        Code::OutOfRange
    );
    // A partial message waits for more.
    let mut deframer = Deframer::default();
    deframer.push(Bytes::from_static(&[0, 0, 0, 0, 9, 1, 2]));
    assert_eq!(deframer.next_message().unwrap(), None);
    assert_eq!(deframer.buffered(), 7);
}

#[test]
fn an_oversized_frame_is_not_encoded() {
    let big = frame::data(0, Bytes::from(vec![0u8; MAX_MESSAGE_SIZE]));
    assert_eq!(encode(big).unwrap_err().code(), Code::OutOfRange);
}

async fn collect_body(body: FrameBody) -> (Vec<u8>, Option<http::HeaderMap>) {
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

#[tokio::test]
async fn a_response_body_ends_with_its_status() {
    let frames = samples();
    let expected: Vec<u8> = frames.iter().flat_map(tonic_bytes).collect();
    let ok = futures::stream::iter(frames.clone().into_iter().map(Ok));
    let (bytes, trailers) = collect_body(FrameBody::response(ok)).await;
    assert_eq!(bytes, expected);
    assert_eq!(trailers.unwrap()["grpc-status"], "0");

    let failing = futures::stream::iter([
        Ok(frame::ack(1)),
        Err(tonic::Status::permission_denied("no")),
    ]);
    let (bytes, trailers) = collect_body(FrameBody::response(failing)).await;
    assert_eq!(bytes, tonic_bytes(&frame::ack(1)));
    let status = tonic::Status::from_header_map(&trailers.unwrap()).unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);

    let (bytes, trailers) = collect_body(FrameBody::request(futures::stream::iter(frames))).await;
    assert_eq!(bytes, expected);
    assert!(trailers.is_none());
}

#[tokio::test]
async fn frames_cross_a_body_and_a_truncated_body_is_an_error() {
    let frames = samples();
    let body = FrameBody::request(futures::stream::iter(frames.clone()));
    let received: Vec<_> = WireFrames::request(body).collect().await;
    let received: Vec<proto::Frame> = received.into_iter().map(Result::unwrap).collect();
    assert_eq!(received, frames);

    let mut cut = tonic_bytes(&frame::close(None));
    cut.pop();
    let body = http_body_util::Full::new(Bytes::from(cut));
    let received: Vec<_> = WireFrames::request(body).collect().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].as_ref().unwrap_err().code(), Code::Internal);
}
