//! A minimal HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`: probes
//! and a Prometheus scraper send one small GET each (one request per
//! connection, `Connection: close`) — no async runtime or server crate in a
//! CNI binary.
//!
//! Each connection gets its own thread and a short deadline for the whole
//! request, so a client that connects and sends nothing (or dribbles bytes)
//! never delays a kubelet probe; past [`MAX_CONNECTIONS`] at once, a new
//! connection is closed at once rather than queued behind them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests larger than this are not probes or scrapes.
const MAX_REQUEST: usize = 8 * 1024;
/// The whole request must arrive within this; a probe's comes at once.
const READ_DEADLINE: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once (probes and a scraper need a handful).
pub const MAX_CONNECTIONS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// `GET /path HTTP/1.1` → (method, path without the query).
pub fn parse_request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The bytes of a full response (`head_only` for HEAD).
pub fn encode(response: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    out
}

fn handle(mut stream: TcpStream, handler: &Handler, read_deadline: Duration) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + read_deadline;
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
            // Too slow: no answer, the connection just closes.
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&request);
    let (response, head_only) = match parse_request_line(&head) {
        Some(("GET", path)) => (handler(path), false),
        Some(("HEAD", path)) => (handler(path), true),
        Some(_) => (Response::text(405, "only GET and HEAD\n"), false),
        None => (Response::text(400, "bad request\n"), false),
    };
    let _ = stream.write_all(&encode(&response, head_only));
}

/// Serves on `listener` from a background thread, each connection on a
/// thread of its own.
pub fn serve(listener: TcpListener, handler: Handler) -> std::thread::JoinHandle<()> {
    serve_with_deadline(listener, handler, READ_DEADLINE)
}

/// [`serve`] with another deadline for a request to arrive (tests).
pub fn serve_with_deadline(
    listener: TcpListener,
    handler: Handler,
    read_deadline: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming().flatten() {
                if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::SeqCst);
                    continue; // dropped: closed at once
                }
                let (handler, count) = (handler.clone(), open.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            handle(stream, &handler, read_deadline);
                            count.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })
        .expect("spawning the HTTP thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request_line("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/readyz"))
        );
        assert_eq!(
            parse_request_line("GET /metrics?x=1 HTTP/1.0\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line("garbage"), None);
        assert_eq!(parse_request_line("GET readyz HTTP/1.1"), None);
    }

    #[test]
    fn serves_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(
            listener,
            Arc::new(|path: &str| match path {
                "/healthz" => Response::text(200, "ok\n"),
                _ => Response::text(404, "not found\n"),
            }),
        );
        let ok = get(addr, "/healthz");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    /// One GET over a connection of its own; the whole reply.
    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        // A guard against hanging the run (a server that queues the probe
        // behind silent clients fails here), not a measurement.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    /// A /readyz server on a loopback port closing silent clients at `deadline`.
    fn ready_server(deadline: Duration) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_with_deadline(
            listener,
            Arc::new(|_: &str| Response::text(200, "ready\n")),
            deadline,
        );
        addr
    }

    /// Clients that connect and send nothing (a port scan, a stuck scraper)
    /// must not hold up the kubelet's probe: /readyz is answered while they
    /// are still connected. The deadline is made long here so that a server
    /// serving one connection at a time would answer only after closing the
    /// silent ones, which the last check would see — no clock is compared.
    #[test]
    fn a_silent_client_does_not_hold_up_readyz() {
        let addr = ready_server(Duration::from_secs(600));
        let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let reply = get(addr, "/readyz");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        for mut stream in silent {
            stream.set_nonblocking(true).unwrap();
            let err = stream
                .read(&mut [0u8; 1])
                .expect_err("still open, unanswered");
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        }
    }

    /// A client that sends nothing is closed, unanswered, at the deadline.
    #[test]
    fn a_silent_client_is_closed_at_the_deadline() {
        let addr = ready_server(Duration::from_millis(100));
        let mut silent = TcpStream::connect(addr).unwrap();
        // Only a guard against hanging the test run, not a measurement.
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200 OK\r\n"));
    }
}
