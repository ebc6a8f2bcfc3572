//! BindComplete ('2').

empty_message!(
    /// Has no body.
    BindComplete,
    b'2'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&BindComplete.encode()[..], &[b'2', 0, 0, 0, 4]);
        round_trip(Direction::Backend, BindComplete);
        assert!(BindComplete::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
