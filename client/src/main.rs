#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let code = postern::cli::run().await;
    std::process::exit(code);
}
