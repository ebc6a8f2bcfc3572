//! The benchmark's target service: `U` uploads (read to EOF, answer the byte
//! count), `D<len:u64>` downloads (send `len` bytes, then close), `E` echoes
//! (small requests answered as they come, for round-trip latency).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CHUNK: usize = 256 * 1024;

pub fn pattern() -> Vec<u8> {
    // Incompressible enough that no hop can cheat by compressing.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    Ok(addr)
}

async fn serve(mut socket: TcpStream) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    match socket.read_u8().await? {
        b'U' => {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                let n = socket.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            socket.write_u64(total).await?;
        }
        b'D' => {
            let mut left = socket.read_u64().await?;
            let data = pattern();
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                socket.write_all(&data[..n]).await?;
                left -= n as u64;
            }
        }
        b'E' => {
            let (mut read, mut write) = socket.split();
            tokio::io::copy(&mut read, &mut write).await?;
        }
        _ => {}
    }
    socket.shutdown().await
}
