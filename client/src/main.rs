#![forbid(unsafe_code)]

/// One thread: the CLI forwards one person's sessions, and on one thread no
/// message waits for another thread to wake up (pgbench -S through
/// `postern connect` with one client: 0.54x -> 0.60x of ssh -L here; bulk
/// throughput unchanged; see BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = postern::cli::run().await;
    std::process::exit(code);
}
