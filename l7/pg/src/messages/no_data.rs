//! NoData ('n'): the described statement or portal returns no rows.

empty_message!(
    /// Has no body.
    NoData,
    b'n'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&NoData.encode()[..], &[b'n', 0, 0, 0, 4]);
        round_trip(Direction::Backend, NoData);
        assert!(NoData::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
