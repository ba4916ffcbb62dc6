//! The codec every generated server and client uses: prost's, except that a message that cannot
//! be decoded is the sender's fault (`INVALID_ARGUMENT`), not the server's (`INTERNAL`, which is
//! what tonic-prost answers). A malformed request then reads as a refused request, and `INTERNAL`
//! keeps meaning a bug.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// [`tonic_prost::ProstCodec`] with decode errors as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy)]
pub struct SettleCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SettleCodec<T, U> {
    fn default() -> Self {
        SettleCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for SettleCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SettleDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SettleDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// Decodes with prost; a message that is not valid protobuf for its type is `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct SettleDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for SettleDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's error text names only wire positions and field paths of the schema, never data.
        self.0.decode(buf).map_err(|status| match status.code() {
            tonic::Code::Internal => Status::invalid_argument(format!(
                "The message could not be decoded as this method's request: {}",
                status.message().chars().take(200).collect::<String>()
            )),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
