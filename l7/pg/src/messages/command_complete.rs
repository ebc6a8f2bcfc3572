//! CommandComplete ('C'): a statement finished; the tag names it and, for
//! most commands that touch rows, how many.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    /// E.g. `SELECT 5`, `INSERT 0 1`, `UPDATE 3`, `COPY 10`, `CREATE TABLE`.
    pub tag: String,
}

impl CommandComplete {
    pub fn new(tag: impl Into<String>) -> Self {
        Self { tag: tag.into() }
    }

    /// The row count the tag carries, for the commands that carry one.
    pub fn rows(&self) -> Option<u64> {
        let mut words = self.tag.split(' ');
        let command = words.next()?;
        let counted = matches!(
            command,
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE"
        );
        if !counted {
            return None;
        }
        // INSERT has an OID before the count: the count is always last.
        self.tag.rsplit(' ').next()?.parse().ok()
    }
}

impl WireMessage for CommandComplete {
    const TAG: Option<u8> = Some(b'C');
    const NAME: &'static str = "CommandComplete";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let tag = reader.cstr_lossy("command tag")?;
        reader.finish()?;
        Ok(Self { tag })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.tag.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(Direction::Backend, CommandComplete::new("SELECT 3"));
    }

    #[test]
    fn reads_row_counts_from_tags() {
        let rows = |tag: &str| CommandComplete::new(tag).rows();
        assert_eq!(rows("SELECT 5"), Some(5));
        assert_eq!(rows("INSERT 0 12"), Some(12));
        assert_eq!(rows("UPDATE 0"), Some(0));
        assert_eq!(rows("COPY 100000"), Some(100_000));
        assert_eq!(rows("CREATE TABLE"), None);
        assert_eq!(rows("BEGIN"), None);
        assert_eq!(rows("SELECT"), None);
    }
}
