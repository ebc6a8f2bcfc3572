//! EmptyQueryResponse ('I'): the query string was empty.

empty_message!(
    /// Has no body.
    EmptyQueryResponse,
    b'I'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&EmptyQueryResponse.encode()[..], &[b'I', 0, 0, 0, 4]);
        round_trip(Direction::Backend, EmptyQueryResponse);
        assert!(EmptyQueryResponse::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
