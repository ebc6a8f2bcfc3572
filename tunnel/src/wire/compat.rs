//! `wire` against tonic over real HTTP/2 connections: each side talks to the
//! other's generated code, so new and old programs interoperate.

use std::convert::Infallible;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{WireFrames, call, server_response};
use crate::frame::{self, MAX_FRAME_PAYLOAD, MAX_MESSAGE_SIZE};
use crate::proto::Frame;
use crate::proto::sessions_client::SessionsClient;
use crate::proto::sessions_server::{Sessions, SessionsServer};
use crate::stream::outgoing_channel;

const OPEN: &str = "/postern.v1.Sessions/Open";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// tonic's side: echoes every frame, or refuses when asked to.
struct Echo;

#[tonic::async_trait]
impl Sessions for Echo {
    type OpenStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

    async fn open(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        if request.metadata().contains_key("x-refuse") {
            return Err(Status::permission_denied("refused"));
        }
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

/// Serves HTTP/2 connections on a fresh port with `service`.
async fn serve<S, B>(service: S) -> Channel
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_frame_size(crate::http2::MAX_FRAME_SIZE)
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    crate::http2::endpoint(&format!("http://{addr}"), None)
        .unwrap()
        .connect_lazy()
}

fn frames() -> Vec<Frame> {
    let big = Bytes::from((0..MAX_FRAME_PAYLOAD).map(|i| i as u8).collect::<Vec<_>>());
    vec![
        frame::data(0, Bytes::from_static(b"hello")),
        frame::data(5, big.slice(..100_000)),
        frame::ack(5),
        frame::keepalive(),
        frame::data(100_005, big),
        frame::close(None),
    ]
}

/// What a frame is, without its payload (so a failure prints briefly).
fn summary(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|frame| match &frame.kind {
            Some(crate::proto::frame::Kind::Data(data)) => {
                let sum: u64 = data.payload.iter().map(|&b| u64::from(b)).sum();
                format!("data@{} len {} sum {sum}", data.offset, data.payload.len())
            }
            other => format!("{other:?}"),
        })
        .collect()
}

fn refuse() -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-refuse", "1".parse().unwrap());
    metadata
}

#[tokio::test]
async fn a_wire_client_talks_to_a_tonic_server() {
    let channel = serve(SessionsServer::new(Echo)).await;
    let (tx, rx) = outgoing_channel();
    let (_, inbound) = call(channel.clone(), OPEN, MetadataMap::new(), rx)
        .await
        .unwrap();
    let sent = frames();
    let to_send = sent.clone();
    let feeder = tokio::spawn(async move {
        for frame in to_send {
            tx.send(frame).await.unwrap();
        }
    });
    let echoed: Vec<Frame> = inbound.map(Result::unwrap).collect().await;
    feeder.await.unwrap();
    assert_eq!(summary(&echoed), summary(&sent));

    let refused = call(channel, OPEN, refuse(), futures::stream::empty()).await;
    assert_eq!(refused.err().unwrap().code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_tonic_client_talks_to_a_wire_server() {
    let service = tower::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
        let (parts, body) = request.into_parts();
        let result = match parts.headers.contains_key("x-refuse") {
            true => Err(Status::permission_denied("refused")),
            false => Ok((MetadataMap::new(), WireFrames::request(body))),
        };
        Ok::<_, Infallible>(server_response(result))
    });
    let channel = serve(service).await;
    let mut client = SessionsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let (tx, rx) = outgoing_channel();
    let inbound = client.open(Request::new(rx)).await.unwrap().into_inner();
    let sent = frames();
    let to_send = sent.clone();
    let feeder = tokio::spawn(async move {
        for frame in to_send {
            tx.send(frame).await.unwrap();
        }
    });
    let echoed: Vec<Frame> = inbound.map(Result::unwrap).collect().await;
    feeder.await.unwrap();
    assert_eq!(summary(&echoed), summary(&sent));

    let mut refused = Request::new(futures::stream::empty());
    *refused.metadata_mut() = refuse();
    let status = client.open(refused).await.err().unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "refused");
}
