//! CloseComplete ('3').

empty_message!(
    /// Has no body.
    CloseComplete,
    b'3'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&CloseComplete.encode()[..], &[b'3', 0, 0, 0, 4]);
        round_trip(Direction::Backend, CloseComplete);
        assert!(CloseComplete::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
