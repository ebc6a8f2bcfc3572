//! Reading and writing the primitive types of the protocol. The reader checks
//! every length against the bytes actually present, so a hostile count can
//! never make us allocate or index past the body.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// A cursor over one message body. `message` names the message in errors.
pub(crate) struct Reader {
    body: Bytes,
    message: &'static str,
}

impl Reader {
    pub(crate) fn new(body: Bytes, message: &'static str) -> Self {
        Self { body, message }
    }

    fn truncated(&self, field: &'static str) -> ProtocolError {
        ProtocolError::Truncated {
            message: self.message,
            field,
        }
    }

    pub(crate) fn invalid(&self, field: &'static str, value: i64) -> ProtocolError {
        ProtocolError::InvalidField {
            message: self.message,
            field,
            value,
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        let b = self.bytes(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        let b = self.bytes(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        Ok(self.i32(field)? as u32)
    }

    /// A count that must not be negative (an Int16 count of items).
    pub(crate) fn count16(&mut self, field: &'static str) -> Result<usize, ProtocolError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.invalid(field, n.into()))
    }

    /// Capacity for `count` items of at least `min_size` bytes each, bounded by
    /// what the body can hold: a lying count cannot force a big allocation.
    pub(crate) fn capacity(&self, count: usize, min_size: usize) -> usize {
        count.min(self.body.len() / min_size.max(1))
    }

    pub(crate) fn bytes(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<Bytes, ProtocolError> {
        if len > self.body.len() {
            return Err(self.truncated(field));
        }
        Ok(self.body.split_to(len))
    }

    /// An Int32 length then that many bytes; -1 is NULL.
    pub(crate) fn nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Bytes>, ProtocolError> {
        match self.i32(field)? {
            -1 => Ok(None),
            n if n < 0 => Err(self.invalid(field, n.into())),
            n => self.bytes(n as usize, field).map(Some),
        }
    }

    /// A NUL-terminated string, as raw bytes without the NUL.
    pub(crate) fn cstr_bytes(&mut self, field: &'static str) -> Result<Bytes, ProtocolError> {
        let end = self
            .body
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.truncated(field))?;
        let value = self.body.split_to(end);
        self.body = self.body.split_off(1);
        Ok(value)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let raw = self.cstr_bytes(field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 {
            message: self.message,
            field,
        })
    }

    /// A NUL-terminated string whose content is only informative (error
    /// text): invalid UTF-8 is replaced rather than refused.
    pub(crate) fn cstr_lossy(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let raw = self.cstr_bytes(field)?;
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    pub(crate) fn finish(self) -> Result<(), ProtocolError> {
        match self.body.len() {
            0 => Ok(()),
            extra => Err(ProtocolError::TrailingBytes {
                message: self.message,
                extra,
            }),
        }
    }
}

pub(crate) fn put_cstr(out: &mut BytesMut, value: &[u8]) {
    out.put_slice(value);
    out.put_u8(0);
}

pub(crate) fn put_nullable(out: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => out.put_i32(-1),
        Some(v) => {
            out.put_i32(v.len() as i32);
            out.put_slice(v);
        }
    }
}

/// Writes a typed message: the type byte, a length placeholder, the body from
/// `body`, then the length (which counts itself but not the type byte).
pub(crate) fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    put_untyped(out, body);
}

/// Writes a message without a type byte (the startup-phase messages).
pub(crate) fn put_untyped(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}
