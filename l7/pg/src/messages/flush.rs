//! Flush ('H'): asks the server to send what it has buffered.

empty_message!(
    /// Has no body.
    Flush,
    b'H'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&Flush.encode()[..], &[b'H', 0, 0, 0, 4]);
        round_trip(Direction::Frontend, Flush);
        assert!(Flush::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
