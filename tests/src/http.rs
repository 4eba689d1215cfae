//! A minimal HTTP/1.1 client over a TCP socket, so tests need no HTTP client dependency.

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `POST path` with `headers` and `body` to `address` (`HOST:PORT`); returns the status
/// code and the body of the answer.
pub async fn http_post(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP answer has a header")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("an HTTP status line")?
        .parse()?;
    Ok((code, body.to_owned()))
}
