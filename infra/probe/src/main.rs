//! `postern-probe http://127.0.0.1:9090/healthz`: exits 0 when the URL answers
//! 200, 1 otherwise (saying why on stderr), 2 on a bad command line.
//!
//! The gateway's image has no shell and no curl, so a container health check
//! (ECS `healthCheck`, Docker `HEALTHCHECK`, compose `healthcheck`) needs a
//! program of its own: this one is std only, plain HTTP/1.1, for the
//! gateway's internal port.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use postern_probe::probe;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url] = args.as_slice() else {
        eprintln!("usage: postern-probe http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    match probe(url, Duration::from_secs(2)) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("postern-probe: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("postern-probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
