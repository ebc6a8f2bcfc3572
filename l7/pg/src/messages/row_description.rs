//! RowDescription ('T'): the columns of the rows that follow.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    /// The table's OID if the column is a plain table column, else 0.
    pub table_oid: u32,
    /// The column's attribute number in that table, else 0.
    pub column_attnum: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary. A statement's description (Describe 'S') has 0
    /// here whatever the Bind later asks for.
    pub format: i16,
}

impl FieldDescription {
    pub fn is_text(&self) -> bool {
        self.format == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowDescription {
    pub fields: Vec<FieldDescription>,
}

impl RowDescription {
    /// The description with Bind's result format codes applied: none means
    /// all text, one applies to all columns, else one per column.
    pub fn with_result_formats(&self, formats: &[i16]) -> RowDescription {
        let mut described = self.clone();
        for (index, field) in described.fields.iter_mut().enumerate() {
            field.format = match formats {
                [] => 0,
                [one] => *one,
                many => many.get(index).copied().unwrap_or(0),
            };
        }
        described
    }
}

/// The fixed part of a field: 4 + 2 + 4 + 2 + 4 + 2 bytes after the name.
const FIELD_FIXED_LEN: usize = 18;

impl WireMessage for RowDescription {
    const TAG: Option<u8> = Some(b'T');
    const NAME: &'static str = "RowDescription";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let count = reader.count16("field count")?;
        let mut fields = Vec::with_capacity(reader.capacity(count, FIELD_FIXED_LEN + 1));
        for _ in 0..count {
            fields.push(FieldDescription {
                name: reader.cstr_lossy("field name")?,
                table_oid: reader.u32("table oid")?,
                column_attnum: reader.i16("column number")?,
                type_oid: reader.u32("type oid")?,
                type_size: reader.i16("type size")?,
                type_modifier: reader.i32("type modifier")?,
                format: reader.i16("format code")?,
            });
        }
        reader.finish()?;
        Ok(Self { fields })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i16(self.fields.len() as i16);
        for field in &self.fields {
            put_cstr(out, field.name.as_bytes());
            out.put_u32(field.table_oid);
            out.put_i16(field.column_attnum);
            out.put_u32(field.type_oid);
            out.put_i16(field.type_size);
            out.put_i32(field.type_modifier);
            out.put_i16(field.format);
        }
    }
}

#[cfg(test)]
pub(crate) fn text_columns(names: &[&str]) -> RowDescription {
    RowDescription {
        fields: names
            .iter()
            .enumerate()
            .map(|(index, name)| FieldDescription {
                name: (*name).into(),
                table_oid: 16384,
                column_attnum: index as i16 + 1,
                type_oid: 25,
                type_size: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = text_columns(&["id", "email"]);
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
        round_trip(Direction::Backend, RowDescription::default());
    }

    #[test]
    fn applies_bind_result_formats() {
        let columns = text_columns(&["a", "b"]);
        let formats = |d: RowDescription| d.fields.iter().map(|f| f.format).collect::<Vec<_>>();
        assert_eq!(formats(columns.with_result_formats(&[])), [0, 0]);
        assert_eq!(formats(columns.with_result_formats(&[1])), [1, 1]);
        assert_eq!(formats(columns.with_result_formats(&[0, 1])), [0, 1]);
    }
}
