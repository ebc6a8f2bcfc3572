//! GET of a small document (a key set, a task's metadata): a non-success
//! status is an error, and a body past the caller's bound is refused before
//! it is all read.

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("cannot fetch {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// The body of `url`, at most `limit` bytes.
pub async fn get_bounded(
    http: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, GetError> {
    let request = |source| GetError::Request {
        url: url.to_owned(),
        source,
    };
    let mut response = http.get(url).send().await.map_err(request)?;
    if !response.status().is_success() {
        return Err(GetError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request)? {
        if body.len() + chunk.len() > limit {
            return Err(GetError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
