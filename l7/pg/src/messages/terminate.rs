//! Terminate ('X'): the client is closing the session.

empty_message!(
    /// Has no body.
    Terminate,
    b'X'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&Terminate.encode()[..], &[b'X', 0, 0, 0, 4]);
        round_trip(Direction::Frontend, Terminate);
        assert!(Terminate::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
