//! The body shared by CopyInResponse, CopyOutResponse and CopyBothResponse.

use bytes::{BufMut, BytesMut};

use super::{parse_formats, put_formats};
use crate::error::ProtocolError;
use crate::wire::Reader;

/// The overall COPY format and each column's format (0 text, 1 binary).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyFormat {
    /// 0 textual (text or CSV), 1 binary.
    pub overall: i8,
    pub columns: Vec<i16>,
}

impl CopyFormat {
    pub(crate) fn parse(reader: &mut Reader) -> Result<Self, ProtocolError> {
        let overall = reader.u8("overall format")? as i8;
        if !(0..=1).contains(&overall) {
            return Err(reader.invalid("overall format", overall.into()));
        }
        let columns = parse_formats(reader, "column format")?;
        Ok(Self { overall, columns })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_i8(self.overall);
        put_formats(out, &self.columns);
    }
}
