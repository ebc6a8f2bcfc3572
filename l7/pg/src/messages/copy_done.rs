//! CopyDone ('c', both directions): the end of COPY data.

empty_message!(
    /// Has no body.
    CopyDone,
    b'c'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&CopyDone.encode()[..], &[b'c', 0, 0, 0, 4]);
        round_trip(Direction::Backend, CopyDone);
        assert!(CopyDone::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
