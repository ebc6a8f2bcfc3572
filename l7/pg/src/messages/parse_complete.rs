//! ParseComplete ('1').

empty_message!(
    /// Has no body.
    ParseComplete,
    b'1'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&ParseComplete.encode()[..], &[b'1', 0, 0, 0, 4]);
        round_trip(Direction::Backend, ParseComplete);
        assert!(ParseComplete::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
