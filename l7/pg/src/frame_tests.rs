use bytes::{BufMut, BytesMut};

use super::*;
use crate::messages::{Query, SslRequest, StartupMessage, Sync, WireMessage};

fn startup() -> Bytes {
    StartupMessage::new(vec![("user".into(), "u".into())]).encode()
}

#[test]
fn frontend_messages_arrive_whole_even_one_byte_at_a_time() {
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&SslRequest.encode());
    stream.extend_from_slice(&startup());
    stream.extend_from_slice(&Query::new("select 1").encode());
    stream.extend_from_slice(&Sync.encode());
    let expected = stream.clone().freeze();

    let mut decoder = FrontendDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for byte in expected.iter() {
        buf.put_u8(*byte);
        while let Some(message) = decoder.decode(&mut buf).unwrap() {
            messages.push(message);
        }
    }
    let tags: Vec<Tag> = messages.iter().map(Message::tag).collect();
    assert_eq!(
        tags,
        [
            Tag::SslRequest,
            Tag::Startup,
            Tag::Byte(b'Q'),
            Tag::Byte(b'S')
        ]
    );
    let rejoined: Vec<u8> = messages.iter().flat_map(|m| m.raw().to_vec()).collect();
    assert_eq!(rejoined, expected.to_vec());
    assert_eq!(
        messages[2].parse::<Query>().unwrap(),
        Query::new("select 1")
    );
}

#[test]
fn startup_packets_are_bounded_at_10000_bytes() {
    let mut buf = BytesMut::new();
    buf.put_i32(10_001);
    buf.put_i32(196608);
    let error = FrontendDecoder::new(Limits::default())
        .decode(&mut buf)
        .unwrap_err();
    assert_eq!(
        error,
        ProtocolError::LengthTooLarge {
            direction: Direction::Frontend,
            tag: Tag::Startup,
            length: 10_001,
            limit: 10_000
        }
    );
    assert!(error.to_string().contains("10000"));
    // Refused from the length alone, before the rest arrives or is reserved.
    assert!(buf.capacity() < 10_000);
}

#[test]
fn negative_and_too_small_lengths_are_refused() {
    for declared in [-1i32, 0, 3, 7] {
        let mut buf = BytesMut::new();
        buf.put_i32(declared);
        buf.put_i32(196608);
        assert!(matches!(
            FrontendDecoder::new(Limits::default()).decode(&mut buf),
            Err(ProtocolError::LengthTooSmall { minimum: 8, .. })
        ));
    }
    for declared in [i32::MIN, -1, 0, 3] {
        let mut buf = BytesMut::new();
        buf.put_u8(b'Z');
        buf.put_i32(declared);
        let error = BackendDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap_err();
        assert_eq!(
            error,
            ProtocolError::LengthTooSmall {
                direction: Direction::Backend,
                tag: Tag::Byte(b'Z'),
                length: declared.into(),
                minimum: 4
            }
        );
    }
}

#[test]
fn typed_messages_are_bounded_by_the_configured_limit() {
    let limits = Limits {
        max_message_len: 1024,
    };
    let mut decoder = BackendDecoder::new(limits);
    let mut buf = BytesMut::new();
    buf.put_u8(b'D');
    buf.put_i32(1024); // 1025 bytes with the type byte
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::LengthTooLarge {
            direction: Direction::Backend,
            tag: Tag::Byte(b'D'),
            length: 1025,
            limit: 1024
        }
    );
    assert_eq!(
        error.to_string(),
        "backend message 'D' declares length 1025, above the limit of 1024 bytes"
    );
    // i32::MAX is refused before anything is reserved for it.
    let mut buf = BytesMut::new();
    buf.put_u8(b'd');
    buf.put_i32(i32::MAX);
    let mut decoder = FrontendDecoder::new(Limits::default());
    decoder.skip_startup();
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(ProtocolError::LengthTooLarge { .. })
    ));
    assert!(buf.capacity() < 1 << 20);
}

#[test]
fn unknown_types_are_refused_with_their_direction() {
    let mut decoder = FrontendDecoder::new(Limits::default());
    decoder.skip_startup();
    let error = decoder
        .decode(&mut BytesMut::from(&b"Z\0\0\0\x04"[..]))
        .unwrap_err();
    assert_eq!(error.to_string(), "unknown frontend message type 'Z'");
    let error = BackendDecoder::new(Limits::default())
        .decode(&mut BytesMut::from(&b"Q\0\0\0\x04"[..]))
        .unwrap_err();
    assert_eq!(error.to_string(), "unknown backend message type 'Q'");
}

#[test]
fn the_encryption_answer_is_one_unframed_byte() {
    let mut decoder = BackendDecoder::new(Limits::default());
    decoder.expect_encryption_response();
    let mut buf = BytesMut::from(&b"NR\0\0\0\x08\0\0\0\0"[..]);
    let answer = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(answer.tag(), Tag::EncryptionResponse);
    assert_eq!(&answer.raw()[..], b"N");
    // 'N' is NoticeResponse once the answer has been read.
    let next = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(next.tag(), Tag::Byte(b'R'));
    decoder.expect_encryption_response();
    assert!(decoder.decode(&mut BytesMut::from(&b"Q"[..])).is_err());
}

#[test]
fn nothing_may_follow_a_cancel_request() {
    let cancel = crate::messages::CancelRequest {
        process_id: 1,
        secret_key: Bytes::from_static(&[0, 0, 0, 1]),
    };
    let mut buf = BytesMut::from(&cancel.encode()[..]);
    buf.put_u8(b'Q');
    let mut decoder = FrontendDecoder::new(Limits::default());
    assert_eq!(
        decoder.decode(&mut buf).unwrap().unwrap().tag(),
        Tag::CancelRequest
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::DataAfterEnd {
            direction: Direction::Frontend
        })
    );
}

#[test]
fn a_declared_length_alone_does_not_make_us_hold_that_much() {
    let mut decoder = BackendDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    buf.put_u8(b'D');
    buf.put_i32(60 * 1024 * 1024);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() < 1 << 20, "reserved {}", buf.capacity());
}
