//! The loopback redirect of `postern login --browser` (RFC 8252 §7.3): a
//! one-login HTTP server on 127.0.0.1 that waits for the identity provider to
//! send the browser back with `code` and `state`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const CALLBACK_PATH: &str = "/callback";

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the identity provider refused the login: {error}{}", crate::oauth::detail(.description))]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("no login arrived within {0:?}")]
    Timeout(Duration),
    #[error("the loopback listener failed: {0}")]
    Io(#[from] std::io::Error),
}

type Outcome = Result<String, CallbackError>;

fn page(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn answer(
    request: &Request<Incoming>,
    state: &str,
    done: &mpsc::Sender<Outcome>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != CALLBACK_PATH {
        return page(StatusCode::NOT_FOUND, "Not found.\n");
    }
    let query = request.uri().query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    // A request without this login's state is not its answer (another
    // program on this computer, or a stale tab): refused, and the wait goes on.
    if param("state").as_deref() != Some(state) {
        return page(
            StatusCode::BAD_REQUEST,
            "This is not the login postern is waiting for (state mismatch).\n",
        );
    }
    if let Some(error) = param("error") {
        let _ = done.try_send(Err(CallbackError::Refused {
            error,
            description: param("error_description"),
        }));
        return page(
            StatusCode::BAD_REQUEST,
            "The login was refused. See the terminal.\n",
        );
    }
    match param("code") {
        Some(code) if !code.is_empty() => {
            let _ = done.try_send(Ok(code));
            page(
                StatusCode::OK,
                "You are logged in to Postern. You can close this tab and return to the terminal.\n",
            )
        }
        _ => page(StatusCode::BAD_REQUEST, "The answer has no code.\n"),
    }
}

/// Serves `listener` until the callback for `state` arrives; returns its code.
pub async fn wait_for_code(listener: TcpListener, state: String, timeout: Duration) -> Outcome {
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(1);
    let accept = async {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => break e,
            };
            let state = state.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let response = answer(&request, &state, &done);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    tokio::select! {
        outcome = done_rx.recv() => outcome.unwrap_or(Err(CallbackError::Timeout(timeout))),
        failed = accept => Err(CallbackError::Io(failed)),
        _ = tokio::time::sleep(timeout) => Err(CallbackError::Timeout(timeout)),
    }
}
