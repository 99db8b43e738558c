//! A minimal HTTP/1.1 client: one keep-alive connection per [`Conn`], hyper's low-level
//! client (no pool, no TLS), so the load generator spends as little CPU per request as
//! possible. A connection that fails or times out is dropped and reopened on the next
//! request.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Errors of the transport (HTTP statuses are not errors here).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot resolve {host}: {err}")]
    Resolve { host: String, err: std::io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    // Messages include their cause (no `source`, so a chain prints it once).
    #[error("cannot connect to {addr}: {err}")]
    Connect {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {err}")]
    Handshake { addr: SocketAddr, err: hyper::Error },
    #[error("request failed: {0}")]
    Request(hyper::Error),
    #[error("invalid request: {0}")]
    Build(hyper::http::Error),
    #[error("invalid header value")]
    Header(#[from] hyper::header::InvalidHeaderValue),
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl HttpError {
    /// The key this error is counted under in the error breakdown.
    pub fn key(&self) -> &'static str {
        match self {
            HttpError::Timeout(_) => "timeout",
            HttpError::Connect { .. }
            | HttpError::Handshake { .. }
            | HttpError::Resolve { .. }
            | HttpError::NoAddress { .. } => "connect",
            HttpError::Request(_) => "io",
            HttpError::BadUrl { .. } | HttpError::Build(_) | HttpError::Header(_) => "client",
        }
    }
}

impl From<hyper::http::Error> for HttpError {
    fn from(e: hyper::http::Error) -> Self {
        HttpError::Build(e)
    }
}

/// An instance's base URL, parsed and resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, without a trailing slash.
    pub url: String,
    /// `host:port` as written in the URL (for the `Host` header).
    host: HeaderValue,
    authority: String,
    /// Path prefix of the URL ("" for `http://host:port`).
    prefix: String,
    addr: SocketAddr,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` and resolves the host.
    pub async fn resolve(url: &str) -> Result<Target, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let trimmed = url.trim().trim_end_matches('/');
        let rest = if let Some(r) = trimmed.strip_prefix("http://") {
            r
        } else if trimmed.starts_with("https://") {
            return Err(bad("https is not supported; use plain http://"));
        } else {
            return Err(bad("expected http://host[:port]"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("expected http://host[:port]"));
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("the URL must not have a query or fragment"));
        }
        let has_port = match authority.rfind(']') {
            // [v6]:port
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let lookup = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(lookup.as_str())
            .await
            .map_err(|err| HttpError::Resolve {
                host: authority.to_string(),
                err,
            })?
            .next()
            .ok_or_else(|| HttpError::NoAddress {
                host: authority.to_string(),
            })?;
        Ok(Target {
            url: trimmed.to_string(),
            host: HeaderValue::from_str(authority).map_err(|_| bad("invalid host"))?,
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            addr,
        })
    }

    /// The request target for `path` (which starts with `/`).
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// `ws://host:port/prefix` + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}{path}", self.authority, self.prefix)
    }
}

/// Status and body of a response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One keep-alive connection to a [`Target`], opened on first use and after a failure.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

/// Extra header of a request (e.g. `X-Admin-Key`).
pub type Extra<'a> = Option<(HeaderName, &'a HeaderValue)>;

impl Conn {
    pub fn new(target: Arc<Target>, timeout: Duration) -> Conn {
        Conn {
            target,
            sender: None,
            timeout,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Opens the connection now if it is not open (so the first measured request does not
    /// pay for the TCP handshake).
    pub async fn connect(&mut self) -> Result<(), HttpError> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        self.sender = None;
        let addr = self.target.addr;
        let fut = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|err| HttpError::Connect { addr, err })?;
            // Requests are small and latency-sensitive.
            stream
                .set_nodelay(true)
                .map_err(|err| HttpError::Connect { addr, err })?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|err| HttpError::Handshake { addr, err })?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the server closes; nothing to report.
                let _ = conn.await;
            });
            Ok::<_, HttpError>(sender)
        };
        let sender = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))??;
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole response. Any error drops the connection.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        extra: Extra<'_>,
        body: Option<Bytes>,
    ) -> Result<Response, HttpError> {
        let result = self.request_inner(method, path, auth, extra, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        extra: Extra<'_>,
        body: Option<Bytes>,
    ) -> Result<Response, HttpError> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.target.path(path))
            .header(header::HOST, self.target.host.clone());
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        if let Some((name, value)) = extra {
            req = req.header(name, value.clone());
        }
        let req = match body {
            Some(b) => req
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(Full::new(b))?,
            None => req.body(Full::new(Bytes::new()))?,
        };
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.connect().await?;
            let Some(sender) = self.sender.as_mut() else {
                // connect() either set it or failed.
                return Err(HttpError::Timeout(timeout));
            };
            sender.ready().await.map_err(HttpError::Request)?;
            let resp = sender.send_request(req).await.map_err(HttpError::Request)?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(HttpError::Request)?
                .to_bytes();
            Ok(Response { status, body })
        })
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
    }
}

/// `Bearer <key>` as a header value.
pub fn bearer(key: &str) -> Result<HeaderValue, HttpError> {
    Ok(HeaderValue::from_str(&format!("Bearer {key}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_parse_with_ports_prefixes_and_errors() {
        let t = Target::resolve("http://127.0.0.1:3000/").await.unwrap();
        assert_eq!(t.url, "http://127.0.0.1:3000");
        assert_eq!(t.path("/api/v1/posts"), "/api/v1/posts");
        assert_eq!(t.ws_url("/ws"), "ws://127.0.0.1:3000/ws");
        assert_eq!(t.addr.port(), 3000);
        let t = Target::resolve("http://127.0.0.1/hive").await.unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path("/x"), "/hive/x");
        let t = Target::resolve("http://[::1]:8080").await.unwrap();
        assert_eq!(t.addr.port(), 8080);
        for bad in [
            "https://127.0.0.1",
            "127.0.0.1:3000",
            "http://",
            "http://u@h",
            "http://h/?q",
        ] {
            assert!(Target::resolve(bad).await.is_err(), "{bad}");
        }
    }
}
