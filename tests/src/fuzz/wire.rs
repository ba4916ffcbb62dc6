//! Calls over real gRPC with request and response bodies as raw bytes: the fuzzer encodes its
//! dynamic messages itself (and can send bytes no generated type would), and decodes answers with
//! the method's descriptor.

use std::time::Duration;

use http::uri::PathAndQuery;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The largest answer the fuzzer reads; far above any server's limit, so an oversized answer is
/// seen as such rather than cut short by the client.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A codec that passes message bodies through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut body = vec![0; src.remaining()];
        src.copy_to_slice(&mut body);
        Ok(Some(body))
    }
}

/// Metadata entries of one call; a value that is not valid header text is skipped (the transport
/// could not send it anyway), and the skip is visible to the caller.
pub fn metadata(entries: &[(String, String)]) -> (MetadataMap, usize) {
    let mut map = MetadataMap::new();
    let mut skipped = 0;
    for (key, value) in entries {
        match (
            key.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
            value.parse::<AsciiMetadataValue>(),
        ) {
            (Ok(key), Ok(value)) => {
                map.append(key, value);
            }
            _ => skipped += 1,
        }
    }
    (map, skipped)
}

/// What one call ended with.
#[derive(Debug)]
pub enum Answer {
    Ok(Vec<u8>),
    Err(Status),
    /// No answer within the client's deadline: a hang.
    Hung,
}

fn request(body: Vec<u8>, metadata: MetadataMap, deadline: Duration) -> Request<Vec<u8>> {
    let mut request = Request::new(body);
    *request.metadata_mut() = metadata;
    request.set_timeout(deadline);
    request
}

fn path(path: &str) -> Result<PathAndQuery, Status> {
    path.parse().map_err(|_| Status::new(Code::InvalidArgument, format!("bad method path {path}")))
}

/// A unary call of `method` (`/package.Service/Method`) with `body`, bounded by `deadline`.
pub async fn unary(
    channel: &Channel,
    method: &str,
    body: Vec<u8>,
    metadata: MetadataMap,
    deadline: Duration,
) -> Answer {
    let call = async {
        let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE);
        grpc.ready().await.map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
        let response = grpc.unary(request(body, metadata, deadline), path(method)?, RawCodec).await?;
        Ok::<_, Status>(response.into_inner())
    };
    // A little beyond the deadline the server was told, so the server's own answer wins the race.
    match tokio::time::timeout(deadline + Duration::from_secs(1), call).await {
        Ok(Ok(body)) => Answer::Ok(body),
        Ok(Err(status)) => Answer::Err(status),
        Err(_) => Answer::Hung,
    }
}

/// What one server stream gave: its messages read within `read_for`, and how it ended.
#[derive(Debug)]
pub struct StreamAnswer {
    pub opened: Answer,
    pub messages: Vec<Vec<u8>>,
    /// An error the stream ended with after opening.
    pub ended: Option<Status>,
}

/// Opens a server stream of `method`, reads at most `max_messages` for up to `read_for`, then drops
/// it (a client going away). Opening must take less than `deadline`.
pub async fn stream(
    channel: &Channel,
    method: &str,
    body: Vec<u8>,
    metadata: MetadataMap,
    deadline: Duration,
    read_for: Duration,
    max_messages: usize,
) -> StreamAnswer {
    let open = async {
        let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE);
        grpc.ready().await.map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
        // The stream itself lives longer than a unary deadline; only opening it is bounded.
        let mut request = Request::new(body);
        *request.metadata_mut() = metadata;
        let response = grpc.server_streaming(request, path(method)?, RawCodec).await?;
        Ok::<_, Status>(response.into_inner())
    };
    let mut streaming = match tokio::time::timeout(deadline, open).await {
        Ok(Ok(streaming)) => streaming,
        Ok(Err(status)) => {
            return StreamAnswer { opened: Answer::Err(status), messages: vec![], ended: None };
        }
        Err(_) => return StreamAnswer { opened: Answer::Hung, messages: vec![], ended: None },
    };
    let mut messages = Vec::new();
    let mut ended = None;
    let until = tokio::time::Instant::now() + read_for;
    while messages.len() < max_messages {
        match tokio::time::timeout_at(until, streaming.message()).await {
            Ok(Ok(Some(message))) => messages.push(message),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(status)) => {
                ended = Some(status);
                break;
            }
        }
    }
    StreamAnswer { opened: Answer::Ok(Vec::new()), messages, ended }
}
