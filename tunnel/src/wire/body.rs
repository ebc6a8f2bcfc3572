//! HTTP bodies and calls over [`super::encode`] and [`super::Deframer`]:
//! the streaming RPCs of the data path (`Attach`, `Open`, `Splice`) without
//! tonic's codec, on the same tonic `Channel`s and hyper servers.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use http::{HeaderMap, Method, StatusCode};
use http_body::Body as _;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use super::{Deframer, encode};
use crate::proto::Frame;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
type Frames = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// Outgoing frames as an HTTP body: a request's (ends after the last frame)
/// or a response's (ends with `grpc-status` trailers, the error's if the
/// stream yields one).
pub struct FrameBody {
    frames: Frames,
    payload: Option<Bytes>,
    trailers: bool,
    done: bool,
}

impl FrameBody {
    pub fn request<S>(frames: S) -> Self
    where
        S: Stream<Item = Frame> + Send + 'static,
    {
        Self::new(Box::pin(frames.map(Ok)), false)
    }

    pub fn response<S>(frames: S) -> Self
    where
        S: Stream<Item = Result<Frame, Status>> + Send + 'static,
    {
        Self::new(Box::pin(frames), true)
    }

    fn new(frames: Frames, trailers: bool) -> Self {
        Self {
            frames,
            payload: None,
            trailers,
            done: false,
        }
    }

    fn end(
        &mut self,
        error: Option<Status>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        self.done = true;
        if !self.trailers {
            // A request that fails is reset, as tonic does.
            return Poll::Ready(error.map(Err));
        }
        let status = error.unwrap_or_else(|| Status::new(Code::Ok, ""));
        let mut trailers = HeaderMap::new();
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| http_body::Frame::trailers(trailers)),
        ))
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(payload) = this.payload.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(payload))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(this.frames.as_mut().poll_next(cx)) {
            Some(Ok(frame)) => match encode(frame) {
                Ok(encoded) => {
                    this.payload = encoded.payload;
                    Poll::Ready(Some(Ok(http_body::Frame::data(encoded.head))))
                }
                Err(status) => this.end(Some(status)),
            },
            Some(Err(status)) => this.end(Some(status)),
            None => this.end(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.payload.is_none()
    }
}

/// Incoming frames from an HTTP body (a request's, or a response's, which
/// must end with a `grpc-status`).
pub struct WireFrames {
    body: tonic::body::Body,
    deframer: Deframer,
    /// For a response: its HTTP status, and whether a grpc-status was seen.
    response: Option<(StatusCode, bool)>,
    done: bool,
}

impl WireFrames {
    /// The frames of a request's body, on the server.
    pub fn request<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::new(tonic::body::Body::new(body), None)
    }

    fn new(body: tonic::body::Body, response: Option<(StatusCode, bool)>) -> Self {
        Self {
            body,
            deframer: Deframer::default(),
            response,
            done: false,
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame, Status>>> {
        self.done = true;
        Poll::Ready(Some(Err(status)))
    }

    fn end(&mut self) -> Poll<Option<Result<Frame, Status>>> {
        self.done = true;
        if self.deframer.buffered() > 0 {
            return self.fail(Status::internal("Unexpected EOF decoding stream."));
        }
        match self.response {
            Some((StatusCode::OK, false)) => self.fail(Status::unknown(
                "protocol error: missing grpc-status trailer, stream was terminated without a final status",
            )),
            Some((status, false)) => self.fail(Status::unknown(format!(
                "grpc-status header missing, HTTP status code {}",
                status.as_u16()
            ))),
            _ => Poll::Ready(None),
        }
    }
}

impl Stream for WireFrames {
    type Item = Result<Frame, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.deframer.next_frame() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(status) => return this.fail(status),
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.deframer.push(data),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        if let Some(status) = Status::from_header_map(&trailers) {
                            if let Some((_, seen)) = &mut this.response {
                                *seen = true;
                            }
                            if status.code() != Code::Ok {
                                return this.fail(status);
                            }
                        }
                    }
                },
                // A client that cancels its request just ends it.
                Some(Err(status))
                    if this.response.is_none() && status.code() == Code::Cancelled =>
                {
                    return this.end();
                }
                Some(Err(status)) => return this.fail(status),
                None => return this.end(),
            }
        }
    }
}

/// Calls the streaming method at `path` (`/package.Service/Method`) on
/// `channel`: `outgoing` is the request's frames, `metadata` its headers.
/// Errors are what tonic's generated client would return.
pub async fn call<S>(
    mut channel: Channel,
    path: &'static str,
    metadata: MetadataMap,
    outgoing: S,
) -> Result<(MetadataMap, WireFrames), Status>
where
    S: Stream<Item = Frame> + Send + 'static,
{
    let mut request = http::Request::new(tonic::body::Body::new(FrameBody::request(outgoing)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    let headers = request.headers_mut();
    *headers = metadata.into_headers();
    headers.insert(CONTENT_TYPE, GRPC);
    headers.insert(TE, HeaderValue::from_static("trailers"));
    // As tonic's generated clients do.
    let ready = channel
        .ready()
        .await
        .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
    let response = ready
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let (parts, body) = response.into_parts();
    // A trailers-only response carries its status in the headers.
    let seen = match Status::from_header_map(&parts.headers) {
        Some(status) if status.code() != Code::Ok => return Err(status),
        Some(_) => true,
        None => false,
    };
    let frames = WireFrames::new(body, Some((parts.status, seen)));
    Ok((MetadataMap::from_headers(parts.headers), frames))
}

/// A streaming method's response on the server: `frames` with `metadata`
/// as headers, or the error as a trailers-only response.
pub fn server_response<S>(
    result: Result<(MetadataMap, S), Status>,
) -> http::Response<tonic::body::Body>
where
    S: Stream<Item = Result<Frame, Status>> + Send + 'static,
{
    match result {
        Ok((metadata, frames)) => {
            let mut response =
                http::Response::new(tonic::body::Body::new(FrameBody::response(frames)));
            let headers = response.headers_mut();
            *headers = metadata.into_headers();
            headers.insert(CONTENT_TYPE, GRPC);
            response
        }
        Err(status) => status.into_http(),
    }
}
