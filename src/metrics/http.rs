//! The smallest HTTP server a Prometheus scrape needs: std's TcpListener
//! on a thread of its own, one connection at a time, strict limits (8 KiB
//! of request head, 2 s to send it, 5 s to take the answer, then the
//! connection is closed). A scrape is one GET every few seconds; a full
//! HTTP stack (hyper, tokio) would be most of the daemon's dependencies
//! for that. Serving one client at a time means a client that stalls
//! delays other scrapers by the timeouts at most, and never the dataplane,
//! which this thread never waits for (see `super`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Exporter;

/// Largest request head (request line + headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
const READ_LIMIT: Duration = Duration::from_secs(2);
const WRITE_LIMIT: Duration = Duration::from_secs(5);

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics { head_only: bool },
    Index { head_only: bool },
}

/// Why a request is refused: the status line's code and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub u16, pub &'static str);

/// Parses a request head (everything before the blank line). Never
/// panics; anything but `GET`/`HEAD` of `/` or `/metrics` is refused.
pub fn parse_request(head: &[u8]) -> Result<Route, Refusal> {
    const BAD: Refusal = Refusal(400, "Bad Request");
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| BAD)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(Refusal(505, "HTTP Version Not Supported"));
    }
    if !target.starts_with('/') {
        return Err(BAD);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(Refusal(405, "Method Not Allowed"))
        }
        _ => return Err(BAD),
    };
    // Prometheus may add query parameters; none change the answer.
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => Ok(Route::Metrics { head_only }),
        "/" => Ok(Route::Index { head_only }),
        _ => Err(Refusal(404, "Not Found")),
    }
}

/// Binds `addr` (errors are the caller's to name) and serves `exporter`
/// on a thread named `metrics`. Returns the bound address.
pub fn start(addr: SocketAddr, exporter: Arc<Exporter>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(listener, &exporter))?;
    Ok(bound)
}

fn serve(listener: TcpListener, exporter: &Exporter) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = handle(s, exporter) {
                    debug!("metrics: client: {e}");
                }
            }
            // EMFILE and the like: do not spin on them.
            Err(e) => {
                warn!("metrics: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads a head within [`READ_LIMIT`] and [`MAX_HEAD`]: None when the
/// client sent too much or closed early.
fn read_head(s: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + READ_LIMIT;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(None);
        }
        let from = len.saturating_sub(3);
        len += n;
        if let Some(p) = buf[from..len].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(from + p);
            return Ok(Some(buf));
        }
        if len == buf.len() {
            return Ok(None);
        }
    }
}

fn handle(mut s: TcpStream, exporter: &Exporter) -> io::Result<()> {
    s.set_write_timeout(Some(WRITE_LIMIT))?;
    let route = match read_head(&mut s)? {
        Some(head) => parse_request(&head),
        None => Err(Refusal(431, "Request Header Fields Too Large")),
    };
    let text_plain = "text/plain; charset=utf-8";
    let (status, ctype, body, head_only) = match route {
        Ok(Route::Metrics { head_only }) => match exporter.scrape() {
            Some(text) => (
                Refusal(200, "OK"),
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                text,
                head_only,
            ),
            None => (
                Refusal(503, "Service Unavailable"),
                text_plain,
                "meshwire: no snapshot yet, the daemon is starting\n".to_string(),
                head_only,
            ),
        },
        Ok(Route::Index { head_only }) => (
            Refusal(200, "OK"),
            text_plain,
            "meshwire: metrics at /metrics\n".to_string(),
            head_only,
        ),
        Err(r) => (r, text_plain, format!("{} {}\n", r.0, r.1), false),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.0,
        status.1,
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out)?;
    let _ = s.shutdown(std::net::Shutdown::Both);
    Ok(())
}
