//! Where result columns come from. A RowDescription names a column's table
//! only by OID: to apply `table.column` masking rules (and rules on source
//! column names, which an alias cannot dodge), the agent asks the catalog on
//! a second connection of its own, once per table per session.

use bytes::BytesMut;
use postern_l7_pg::messages::{DataRow, ErrorResponse, Query, WireMessage};
use postern_l7_pg::{BackendDecoder, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dial::DbStream;
use super::hooks::{SourceColumn, SourceColumns};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog connection: {0}")]
    Connect(String),
    #[error("the catalog connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the catalog lookup failed: {0}")]
    Protocol(#[from] postern_l7_pg::ProtocolError),
    #[error("the catalog lookup was refused: {0}")]
    Refused(String),
}

/// The lookup query for `oids` (numbers only: nothing from the wire is
/// spliced into SQL but integers).
pub fn lookup_sql(oids: &[u32]) -> String {
    let list: Vec<String> = oids.iter().map(u32::to_string).collect();
    format!(
        "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.oid IN ({})",
        list.join(", ")
    )
}

/// Runs the lookup on `stream` (logged in and idle) and adds what it finds.
pub async fn look_up(
    stream: &mut DbStream,
    oids: &[u32],
    sources: &mut SourceColumns,
) -> Result<(), CatalogError> {
    let query = Query {
        sql: lookup_sql(oids),
    };
    stream.write_all(&query.encode()).await?;
    stream.flush().await?;
    let mut decoder = BackendDecoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut refused = None;
    loop {
        let Some(message) = decoder.decode(&mut buf)? else {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the database closed the catalog connection",
                )
                .into());
            }
            continue;
        };
        match message.type_byte() {
            Some(b'D') => {
                let row: DataRow = message.parse()?;
                if let Some((key, column)) = source_of(&row) {
                    sources.insert(key, column);
                }
            }
            Some(b'E') => {
                let error: ErrorResponse = message.parse()?;
                refused = Some(error.message().unwrap_or("").to_owned());
            }
            Some(b'Z') => {
                return match refused {
                    Some(message) => Err(CatalogError::Refused(message)),
                    None => Ok(()),
                };
            }
            _ => {}
        }
    }
}

fn source_of(row: &DataRow) -> Option<((u32, i16), SourceColumn)> {
    let text = |i: usize| -> Option<&str> {
        row.values
            .get(i)?
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let oid = text(0)?.parse().ok()?;
    let attnum = text(3)?.parse().ok()?;
    Some((
        (oid, attnum),
        SourceColumn {
            schema: text(1)?.to_owned(),
            table: text(2)?.to_owned(),
            column: text(4)?.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn rows_become_sources() {
        assert!(lookup_sql(&[16384, 7]).ends_with("IN (16384, 7)"));
        let row = DataRow {
            values: ["16384", "public", "users", "2", "email"]
                .iter()
                .map(|v| Some(Bytes::from(v.to_string())))
                .collect(),
        };
        let (key, column) = source_of(&row).unwrap();
        assert_eq!(key, (16384, 2));
        assert_eq!(column.table, "users");
        assert_eq!(column.column, "email");
        assert_eq!(source_of(&DataRow::default()), None);
    }
}
