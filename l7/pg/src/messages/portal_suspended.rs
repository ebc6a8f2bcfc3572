//! PortalSuspended ('s'): Execute reached its row limit.

empty_message!(
    /// Has no body.
    PortalSuspended,
    b's'
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::{WireMessage, testing::round_trip};

    #[test]
    fn round_trips_as_five_bytes() {
        assert_eq!(&PortalSuspended.encode()[..], &[b's', 0, 0, 0, 4]);
        round_trip(Direction::Backend, PortalSuspended);
        assert!(PortalSuspended::parse(bytes::Bytes::from_static(b"x")).is_err());
    }
}
