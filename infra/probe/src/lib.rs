//! One HTTP/1.1 GET with a deadline, for container health checks.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The status code `url` (`http://HOST:PORT[/PATH]`) answers a GET with,
/// within `timeout` for the whole exchange.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err("the URL needs a host and a port (http://127.0.0.1:9090/healthz)".into());
    }
    let deadline = Instant::now() + timeout;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())
    };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: postern-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need; bound what is read.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let n = stream.read(&mut buf).map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status(&head).ok_or_else(|| {
        let line = String::from_utf8_lossy(&head);
        format!(
            "not an HTTP/1.x answer: {:?}",
            line.lines().next().unwrap_or("")
        )
    })
}

/// `HTTP/1.1 200 OK\r\n...` -> 200.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then_some(())?;
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A server on an ephemeral port answering one connection with `answer`
    /// after reading the request head; returns the URL and the request seen.
    fn serve_once(answer: &'static [u8]) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before finishing its request");
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn reads_the_status_of_a_real_answer() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        assert_eq!(probe(&url, Duration::from_secs(5)), Ok(200));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nHost: 127.0.0.1:"), "{request}");

        let (url, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\ndraining\n");
        assert_eq!(probe(&url, Duration::from_secs(5)), Ok(503));
        server.join().unwrap();
    }

    #[test]
    fn garbage_and_silence_are_errors() {
        let (url, server) = serve_once(b"SSH-2.0-OpenSSH\r\n");
        let err = probe(&url, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("not an HTTP/1.x answer"), "{err}");
        server.join().unwrap();

        // Accepts and never answers: the deadline holds.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        let started = Instant::now();
        let err = probe(&url, Duration::from_millis(300)).unwrap_err();
        assert!(
            err.contains("timed out") || err.contains("receive"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }

    #[test]
    fn refused_and_malformed_urls_say_why() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2)).unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
        for (url, why) in [
            ("https://127.0.0.1:9090/healthz", "only http://"),
            ("http://127.0.0.1/healthz", "host and a port"),
            ("http:///healthz", "host and a port"),
        ] {
            let err = probe(url, Duration::from_secs(1)).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 404\r\n"), Some(404));
        assert_eq!(status(b"HTTP/2 200\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status(b""), None);
    }
}
