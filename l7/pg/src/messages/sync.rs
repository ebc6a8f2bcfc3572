//! Sync ('S'): ends an extended-query batch; the server answers ReadyForQuery.

empty_message!(
    /// Has no body.
    Sync,
    b'S'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&Sync.encode()[..], &[b'S', 0, 0, 0, 4]);
        round_trip(Direction::Frontend, Sync);
        assert!(Sync::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
