//! A session's frame stream seen as a byte stream (`AsyncRead` + `AsyncWrite`),
//! so TCP sockets and protocol engines can be spliced onto a gRPC stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::PollSender;

use crate::frame::{self, ACK_EVERY_BYTES, MAX_FRAME_PAYLOAD};
use crate::proto::{Frame, frame::Kind};

/// Frames queued towards the gRPC stream; the HTTP/2 window does the real buffering.
const OUTGOING_QUEUE: usize = 8;

/// How long [`FrameStream::finish`] waits for the peer to end its side.
pub const FINISH_LINGER: Duration = Duration::from_secs(10);

/// Socket reads in [`FrameStream::splice_tcp`]: each becomes one frame's payload.
/// Under glibc's mmap threshold, so buffers come from the heap without page faults.
pub const READ_CHUNK: usize = 64 * 1024;

/// An outgoing frame channel: the sender goes to a [`FrameStream`], the stream
/// becomes the body of a gRPC request or response.
pub fn outgoing_channel() -> (mpsc::Sender<Frame>, ReceiverStream<Frame>) {
    let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
    (tx, ReceiverStream::new(rx))
}

/// Byte-stream view of one session direction pair.
///
/// Reading checks that data offsets are contiguous and acknowledges received
/// bytes; writing stamps offsets; shutdown sends a `Close` frame (a half-close).
/// Dropping the stream without shutdown ends the gRPC stream without `Close`,
/// which the peer reads as an abnormal end.
pub struct FrameStream<S> {
    incoming: S,
    outgoing: PollSender<Frame>,
    control: mpsc::Sender<Frame>,
    pending: Bytes,
    received: u64,
    acknowledged: u64,
    sent: u64,
    read_closed: bool,
    write_closed: bool,
    last_sent_ms: Arc<AtomicU64>,
    _stop_keepalive: Option<oneshot::Sender<()>>,
}

impl<S> FrameStream<S>
where
    S: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    /// `keepalive`: send a keepalive frame whenever nothing was sent for this long
    /// (needs a Tokio runtime).
    pub fn new(incoming: S, outgoing: mpsc::Sender<Frame>, keepalive: Option<Duration>) -> Self {
        let last_sent_ms = Arc::new(AtomicU64::new(frame::unix_millis()));
        let stop_keepalive = keepalive.map(|period| {
            let (stop_tx, stop_rx) = oneshot::channel();
            tokio::spawn(send_keepalives(
                outgoing.clone(),
                period,
                last_sent_ms.clone(),
                stop_rx,
            ));
            stop_tx
        });
        Self {
            incoming,
            control: outgoing.clone(),
            outgoing: PollSender::new(outgoing),
            pending: Bytes::new(),
            received: 0,
            acknowledged: 0,
            sent: 0,
            read_closed: false,
            write_closed: false,
            last_sent_ms,
            _stop_keepalive: stop_keepalive,
        }
    }

    /// Ends the stream cleanly, after [`splice`] or an error.
    ///
    /// Dropping a gRPC response while our own request frames are still queued
    /// resets the HTTP/2 stream and loses them. So: say why if it failed, end our
    /// side (END_STREAM follows the queued frames), then read until the peer ends
    /// its side too, for at most `linger`.
    pub async fn finish(self, error: Option<String>, linger: Duration) {
        let Self {
            mut incoming,
            outgoing,
            control,
            write_closed,
            _stop_keepalive,
            ..
        } = self;
        drop(outgoing);
        drop(_stop_keepalive);
        let drain = async move {
            if let Some(reason) = error.filter(|_| !write_closed) {
                let _ = control.send(frame::close(Some(reason))).await;
            }
            drop(control);
            while let Some(Ok(_)) = incoming.next().await {}
        };
        let _ = tokio::time::timeout(linger, drain).await;
    }

    /// Waits for room for one frame besides data (a statement audit): once it
    /// returns ready, [`FrameStream::send_reserved`] queues the frame behind
    /// every byte written before it.
    pub fn poll_reserve_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.poll_reserve(cx).map_err(|_| closed_stream())
    }

    /// Queues `frame` in the room [`FrameStream::poll_reserve_frame`] made.
    pub fn send_reserved(&mut self, frame: Frame) -> io::Result<()> {
        self.outgoing.send_item(frame).map_err(|_| closed_stream())
    }

    /// Payload bytes received and sent so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    fn on_data(&mut self, offset: u64, payload: Bytes) -> io::Result<()> {
        accept_data(
            &mut self.received,
            &mut self.acknowledged,
            &self.control,
            offset,
            &payload,
        )?;
        self.pending = payload;
        Ok(())
    }

    /// Copies both ways between a TCP socket and this stream until both
    /// directions are closed; returns (bytes socket→frames, bytes frames→socket).
    ///
    /// Unlike a generic byte copy, socket reads land in a fresh buffer that
    /// becomes the frame payload, and received payloads are written to the
    /// socket as they are: no user-space copy at either end.
    ///
    /// A reset of the socket (ECONNRESET, EPIPE) ends this endpoint as a close
    /// would, not as an error: endpoints that close with unread bytes reset
    /// instead of closing, which is how psql and PostgreSQL over TLS end every
    /// session (each side's close_notify is left unread). Postern's own
    /// failures (the frame stream, offsets) remain errors.
    pub async fn splice_tcp(&mut self, socket: &mut TcpStream) -> io::Result<(u64, u64)> {
        let (mut socket_read, mut socket_write) = socket.split();
        let Self {
            incoming,
            control,
            pending,
            received,
            acknowledged,
            sent,
            read_closed,
            write_closed,
            last_sent_ms,
            ..
        } = self;
        let control_down = control.clone();
        let up = async {
            let start = *sent;
            while !*write_closed {
                let mut buffer = BytesMut::with_capacity(READ_CHUNK);
                let n = match socket_read.read_buf(&mut buffer).await {
                    // The endpoint is gone: for a relay, that is its close.
                    Err(e) if is_reset(&e) => 0,
                    result => result?,
                };
                let frame = if n == 0 {
                    *write_closed = true;
                    frame::close(None)
                } else {
                    frame::data(*sent, buffer.freeze())
                };
                control.send(frame).await.map_err(|_| closed_stream())?;
                *sent += n as u64;
                last_sent_ms.store(frame::unix_millis(), Ordering::Relaxed);
            }
            Ok::<u64, io::Error>(*sent - start)
        };
        let down = async {
            let mut written = 0u64;
            // Set when writing hit a reset: the endpoint is gone, so the peer's
            // remaining bytes are discarded until its Close.
            let mut endpoint_gone = false;
            if !pending.is_empty() {
                socket_write.write_all(pending).await?;
                written += pending.len() as u64;
                *pending = Bytes::new();
            }
            while !*read_closed {
                let next = incoming.next().await;
                let Some(item) = next else {
                    *read_closed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "session stream ended without a close frame",
                    ));
                };
                match item.map_err(status_to_io)?.kind {
                    Some(Kind::Data(data)) => {
                        accept_data(
                            received,
                            acknowledged,
                            &control_down,
                            data.offset,
                            &data.payload,
                        )?;
                        if !endpoint_gone {
                            match socket_write.write_all(&data.payload).await {
                                Ok(()) => written += data.payload.len() as u64,
                                Err(e) if is_reset(&e) => endpoint_gone = true,
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Some(Kind::Close(close)) => {
                        *read_closed = true;
                        if close.error {
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                format!("peer closed the session: {}", close.reason),
                            ));
                        }
                    }
                    Some(Kind::Ack(_) | Kind::Keepalive(_) | Kind::Audit(_)) | None => {}
                }
            }
            match socket_write.shutdown().await {
                Err(e) if !is_reset(&e) && e.kind() != io::ErrorKind::NotConnected => {
                    return Err(e);
                }
                _ => {}
            }
            Ok(written)
        };
        tokio::try_join!(up, down)
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Checks a data frame's offset against what was received and acknowledges
/// every [`ACK_EVERY_BYTES`].
fn accept_data(
    received: &mut u64,
    acknowledged: &mut u64,
    control: &mpsc::Sender<Frame>,
    offset: u64,
    payload: &Bytes,
) -> io::Result<()> {
    if offset != *received {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("session frame at offset {offset}, expected offset {received}"),
        ));
    }
    *received += payload.len() as u64;
    if *received - *acknowledged >= ACK_EVERY_BYTES {
        // Acks are cumulative: if the queue is full, the next one covers this.
        if control.try_send(frame::ack(*received)).is_ok() {
            *acknowledged = *received;
        }
    }
    Ok(())
}

async fn send_keepalives(
    outgoing: mpsc::Sender<Frame>,
    period: Duration,
    last_sent_ms: Arc<AtomicU64>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {
                let idle_ms = frame::unix_millis().saturating_sub(last_sent_ms.load(Ordering::Relaxed));
                if idle_ms as u128 >= period.as_millis() / 2 && outgoing.send(frame::keepalive()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn status_to_io(status: tonic::Status) -> io::Error {
    let kind = match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => io::ErrorKind::ConnectionAborted,
        tonic::Code::DeadlineExceeded => io::ErrorKind::TimedOut,
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            io::ErrorKind::PermissionDenied
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("session stream failed: {}", status.message()))
}

impl<S> AsyncRead for FrameStream<S>
where
    S: Stream<Item = Result<Frame, tonic::Status>> + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            let Some(item) = ready!(this.incoming.poll_next_unpin(cx)) else {
                this.read_closed = true;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "session stream ended without a close frame",
                )));
            };
            match item.map_err(status_to_io)?.kind {
                Some(Kind::Data(data)) => this.on_data(data.offset, data.payload)?,
                Some(Kind::Close(close)) => {
                    this.read_closed = true;
                    if close.error {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("peer closed the session: {}", close.reason),
                        )));
                    }
                }
                Some(Kind::Ack(_) | Kind::Keepalive(_) | Kind::Audit(_)) | None => {}
            }
        }
    }
}

impl<S: Unpin> AsyncWrite for FrameStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the session's write side was closed",
            )));
        }
        ready!(this.outgoing.poll_reserve(cx)).map_err(|_| closed_stream())?;
        let n = buf.len().min(MAX_FRAME_PAYLOAD);
        let frame = frame::data(this.sent, Bytes::copy_from_slice(&buf[..n]));
        this.outgoing
            .send_item(frame)
            .map_err(|_| closed_stream())?;
        this.sent += n as u64;
        this.last_sent_ms
            .store(frame::unix_millis(), Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        ready!(this.outgoing.poll_reserve(cx)).map_err(|_| closed_stream())?;
        this.outgoing
            .send_item(frame::close(None))
            .map_err(|_| closed_stream())?;
        this.write_closed = true;
        Poll::Ready(Ok(()))
    }
}

fn closed_stream() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "session stream closed")
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    type Incoming =
        futures::stream::Map<ReceiverStream<Frame>, fn(Frame) -> Result<Frame, tonic::Status>>;

    fn pair() -> (FrameStream<Incoming>, FrameStream<Incoming>) {
        let (a_tx, a_rx) = outgoing_channel();
        let (b_tx, b_rx) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        (
            FrameStream::new(b_rx.map(ok), a_tx, None),
            FrameStream::new(a_rx.map(ok), b_tx, None),
        )
    }

    #[tokio::test]
    async fn bytes_cross_in_both_directions_with_half_close() {
        let (mut a, mut b) = pair();
        let big = vec![7u8; MAX_FRAME_PAYLOAD * 3 + 5];
        let writer = tokio::spawn(async move {
            a.write_all(&big).await.unwrap();
            a.shutdown().await.unwrap();
            let mut reply = String::new();
            a.read_to_string(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), MAX_FRAME_PAYLOAD * 3 + 5);
        assert!(got.iter().all(|&x| x == 7));
        b.write_all(b"thanks").await.unwrap();
        b.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), "thanks");
        assert_eq!(b.counters(), (got.len() as u64, 6));
    }

    #[tokio::test]
    async fn an_offset_gap_is_invalid_data() {
        let (tx, rx) = outgoing_channel();
        let (out, _keep) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        let mut stream = FrameStream::new(rx.map(ok), out, None);
        tx.send(frame::data(0, Bytes::from_static(b"abc")))
            .await
            .unwrap();
        tx.send(frame::data(10, Bytes::from_static(b"def")))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3);
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn error_close_and_abrupt_end_are_errors() {
        let (tx, rx) = outgoing_channel();
        let (out, _keep) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        let mut stream = FrameStream::new(rx.map(ok), out, None);
        tx.send(frame::close(Some("target reset".into())))
            .await
            .unwrap();
        let err = stream.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(err.to_string().contains("target reset"));

        let (tx, rx) = outgoing_channel();
        let (out, _keep) = outgoing_channel();
        let mut stream = FrameStream::new(rx.map(ok), out, None);
        drop(tx);
        let err = stream.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn acknowledges_received_bytes() {
        let (tx, rx) = outgoing_channel();
        let (out, mut sent) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        let mut stream = FrameStream::new(rx.map(ok), out, None);
        let chunk = Bytes::from(vec![1u8; MAX_FRAME_PAYLOAD]);
        let frames = ACK_EVERY_BYTES as usize / MAX_FRAME_PAYLOAD;
        let feeder = tokio::spawn(async move {
            for i in 0..frames {
                tx.send(frame::data((i * MAX_FRAME_PAYLOAD) as u64, chunk.clone()))
                    .await
                    .unwrap();
            }
            tx.send(frame::close(None)).await.unwrap();
        });
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).await.unwrap();
        feeder.await.unwrap();
        let ack = sent.next().await.unwrap();
        assert_eq!(ack, frame::ack(ACK_EVERY_BYTES));
    }

    /// An endpoint that resets (closes with unread bytes) ends the relay like a close.
    #[tokio::test]
    async fn a_reset_endpoint_is_a_close_not_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut relay_side = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (endpoint, _) = listener.accept().await.unwrap();

        let (peer_tx, rx) = outgoing_channel();
        let (out, mut sent) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        let mut frames = FrameStream::new(rx.map(ok), out, None);
        // The peer sends bytes the endpoint never reads, then its Close.
        peer_tx
            .send(frame::data(0, Bytes::from_static(b"unread")))
            .await
            .unwrap();
        let relay = tokio::spawn(async move { frames.splice_tcp(&mut relay_side).await });
        tokio::task::yield_now().await;
        endpoint.set_zero_linger().unwrap();
        drop(endpoint); // RST instead of FIN
        let close = loop {
            match sent.next().await.unwrap().kind {
                Some(Kind::Close(close)) => break close,
                _ => continue,
            }
        };
        assert!(!close.error, "{close:?}");
        peer_tx
            .send(frame::data(6, Bytes::from_static(b"more")))
            .await
            .unwrap();
        peer_tx.send(frame::close(None)).await.unwrap();
        let (up, _down) = relay.await.unwrap().expect("a reset is not an error");
        assert_eq!(up, 0);
    }

    #[tokio::test]
    async fn keepalives_flow_when_idle() {
        let (_tx, rx) = outgoing_channel();
        let (out, mut sent) = outgoing_channel();
        let ok: fn(Frame) -> Result<Frame, tonic::Status> = Ok;
        let stream = FrameStream::new(rx.map(ok), out, Some(Duration::from_millis(20)));
        let frame = tokio::time::timeout(Duration::from_secs(5), sent.next())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(frame.kind, Some(Kind::Keepalive(_))));
        drop(stream);
    }
}
