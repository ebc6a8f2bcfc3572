//! The gRPC codec: prost, with small starting buffers for everything but
//! session data.
//!
//! tonic starts every stream with an 8 KiB encode buffer and an 8 KiB decode
//! buffer. A replica holds one control stream per agent for as long as the
//! agent runs, tens of thousands of them mostly idle, and control messages are
//! tens to hundreds of bytes: those 16 KiB were about a third of what an idle
//! agent tunnel costs a replica (`postern-loadtest idle-agents`). Buffers
//! still grow to fit any message. Frame streams (sessions) keep tonic's
//! defaults: their buffers grow to the 256 KiB messages of the data path anyway.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::BufferSettings;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::proto::Frame;

/// Starting buffer size for control and peer messages.
pub const SMALL_BUFFER: usize = 1024;
/// tonic's default: encoded messages are yielded to HTTP/2 once this many bytes are buffered.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// The buffers a stream of messages of type `M` starts with.
pub fn buffer_settings<M: 'static>() -> BufferSettings {
    if TypeId::of::<M>() == TypeId::of::<Frame>() {
        BufferSettings::default()
    } else {
        BufferSettings::new(SMALL_BUFFER, YIELD_THRESHOLD)
    }
}

/// Used by the generated clients and servers (`codec_path` in `build.rs`).
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(buffer_settings::<U>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AgentMessage, GatewayMessage};

    #[test]
    fn control_messages_start_small_and_frames_keep_the_defaults() {
        let small = BufferSettings::new(SMALL_BUFFER, YIELD_THRESHOLD);
        let default = BufferSettings::default();
        let describe = |s: BufferSettings| format!("{s:?}");
        assert_eq!(describe(buffer_settings::<AgentMessage>()), describe(small));
        assert_eq!(
            describe(buffer_settings::<GatewayMessage>()),
            describe(small)
        );
        assert_eq!(describe(buffer_settings::<Frame>()), describe(default));
    }
}
