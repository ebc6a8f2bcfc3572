//! Session frames in gRPC framing, by hand, for the data path.
//!
//! tonic copies every message twice on its way through a process: into its
//! decode buffer as HTTP/2 DATA arrives, and into its encode buffer when it
//! is sent. Here a data frame's payload `Bytes` goes to HTTP/2 as it is,
//! behind a small header holding the gRPC prefix and the protobuf field tags
//! and lengths, and a received message is sliced out of the HTTP/2 DATA
//! chunk that holds it (copied only when it spans chunks). The bytes on the
//! wire are the same valid protobuf `Frame` messages in gRPC framing that
//! tonic sends and reads, so either side may be tonic.
//!
//! [`body`] turns this into HTTP bodies and calls; [`Deframer`] and
//! [`encode`] are the codec.

pub mod body;
#[cfg(test)]
mod compat;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use prost::encoding::{encode_varint, encoded_len_varint};
use tonic::Status;

use crate::frame::MAX_MESSAGE_SIZE;
use crate::proto::{Frame, frame::Kind};

pub use body::{FrameBody, WireFrames, call, server_response};

/// The gRPC message prefix: a compression flag and a big-endian length.
pub const PREFIX_LEN: usize = 5;
/// Data payloads up to this size are copied next to their header, so a small
/// frame is one chunk (one HTTP/2 DATA frame); larger ones are not copied.
pub const INLINE_PAYLOAD: usize = 4096;

/// `Frame.data`: field 1, length-delimited.
const FRAME_DATA_TAG: u8 = (1 << 3) | 2;
/// `Data.offset`: field 1, varint.
const DATA_OFFSET_TAG: u8 = 1 << 3;
/// `Data.payload`: field 2, length-delimited.
const DATA_PAYLOAD_TAG: u8 = (2 << 3) | 2;

/// One frame in gRPC framing: `head`, then `payload` if there is one.
#[derive(Debug)]
pub struct Encoded {
    pub head: Bytes,
    pub payload: Option<Bytes>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.as_ref().map_or(0, Bytes::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn too_large(len: usize) -> Status {
    Status::out_of_range(format!(
        "a message of {len} bytes is larger than the limit of {MAX_MESSAGE_SIZE} bytes"
    ))
}

fn put_prefix(head: &mut BytesMut, message_len: usize) {
    head.put_u8(0);
    // Bounded by MAX_MESSAGE_SIZE before this is called.
    head.put_u32(message_len as u32);
}

/// Encodes `frame` as prost would, without copying a large data payload.
pub fn encode(frame: Frame) -> Result<Encoded, Status> {
    match frame.kind {
        Some(Kind::Data(data)) if data.payload.len() > INLINE_PAYLOAD => {
            let payload_len = data.payload.len();
            let offset_len = match data.offset {
                0 => 0,
                offset => 1 + encoded_len_varint(offset),
            };
            let data_len = offset_len + 1 + encoded_len_varint(payload_len as u64) + payload_len;
            let message_len = 1 + encoded_len_varint(data_len as u64) + data_len;
            if message_len > MAX_MESSAGE_SIZE {
                return Err(too_large(message_len));
            }
            let mut head = BytesMut::with_capacity(PREFIX_LEN + message_len - payload_len);
            put_prefix(&mut head, message_len);
            head.put_u8(FRAME_DATA_TAG);
            encode_varint(data_len as u64, &mut head);
            if data.offset != 0 {
                head.put_u8(DATA_OFFSET_TAG);
                encode_varint(data.offset, &mut head);
            }
            head.put_u8(DATA_PAYLOAD_TAG);
            encode_varint(payload_len as u64, &mut head);
            Ok(Encoded {
                head: head.freeze(),
                payload: Some(data.payload),
            })
        }
        kind => {
            let frame = Frame { kind };
            let message_len = frame.encoded_len();
            if message_len > MAX_MESSAGE_SIZE {
                return Err(too_large(message_len));
            }
            let mut head = BytesMut::with_capacity(PREFIX_LEN + message_len);
            put_prefix(&mut head, message_len);
            frame.encode_raw(&mut head);
            Ok(Encoded {
                head: head.freeze(),
                payload: None,
            })
        }
    }
}

/// Splits a byte stream (HTTP/2 DATA chunks) into gRPC messages.
///
/// It holds the chunks as they came; a message that lies in one chunk is a
/// slice of it. Lengths are checked against [`MAX_MESSAGE_SIZE`] before
/// anything is allocated or waited for.
#[derive(Debug, Default)]
pub struct Deframer {
    chunks: VecDeque<Bytes>,
    buffered: usize,
}

impl Deframer {
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The length of the next message if all of it is here (its prefix
    /// checked), `None` if more bytes are needed.
    fn next_len(&self) -> Result<Option<usize>, Status> {
        if self.buffered < PREFIX_LEN {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        self.peek(&mut prefix);
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "a compressed message, but compression is not enabled",
                ));
            }
            flag => return Err(Status::internal(format!("invalid compression flag {flag}"))),
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > MAX_MESSAGE_SIZE {
            return Err(too_large(len));
        }
        Ok((self.buffered >= PREFIX_LEN + len).then_some(len))
    }

    /// The next complete message (without its prefix), `None` if more bytes
    /// are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        let Some(len) = self.next_len()? else {
            return Ok(None);
        };
        let mut message = self.message(len);
        Ok(Some(message.copy_to_bytes(len)))
    }

    /// The next complete frame, `None` if more bytes are needed.
    ///
    /// A payload that lies in one chunk is a slice of it, even when the
    /// message's header came in another chunk (as [`encode`] sends it).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Status> {
        let Some(len) = self.next_len()? else {
            return Ok(None);
        };
        let mut message = self.message(len);
        let decoded = Frame::decode(&mut message);
        // Whatever a malformed message left unread goes with it.
        let rest = message.remaining();
        message.advance(rest);
        decoded
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode a session frame: {e}")))
    }

    /// The next `len` bytes after the prefix, as a `Buf` (the caller checked
    /// that they are here).
    fn message(&mut self, len: usize) -> Message<'_> {
        self.buffered -= PREFIX_LEN + len;
        let mut message = Message {
            chunks: &mut self.chunks,
            remaining: PREFIX_LEN,
        };
        message.advance(PREFIX_LEN);
        message.remaining = len;
        message
    }

    fn peek(&self, out: &mut [u8]) {
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = (out.len() - filled).min(chunk.len());
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == out.len() {
                return;
            }
        }
    }
}

/// One message's bytes across the chunks that hold them.
struct Message<'a> {
    chunks: &'a mut VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Message<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(front) => &front[..front.len().min(self.remaining)],
            None => &[],
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the message's end");
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let n = cnt.min(front.len());
            front.advance(n);
            cnt -= n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    /// A slice of the front chunk when it holds all `len` bytes; a copy only
    /// when they span chunks.
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.remaining, "read past the message's end");
        if let Some(front) = self.chunks.front_mut()
            && front.len() >= len
        {
            let out = front.split_to(len);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            self.remaining -= len;
            return out;
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let chunk = self.chunk();
            let n = chunk.len().min(len - out.len());
            out.extend_from_slice(&chunk[..n]);
            self.advance(n);
        }
        out.freeze()
    }
}
