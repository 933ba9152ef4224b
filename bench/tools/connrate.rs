//! connrate: the connection-setup-rate load of scripts/bench.sh (standard library
//! only; built by the script with `rustc -O`, no Cargo project, no dependencies).
//!
//! One "request" is what a short-lived client connection costs end to end:
//! connect, send one byte, receive one byte (the first byte of the answer), and
//! close. The server closes first (after its one-byte answer), so TIME_WAIT lands on
//! the server side and the client never runs out of ephemeral ports.
//!
//!   connrate server --listen ADDR:PORT [--threads N]
//!   connrate client --connect ADDR:PORT --seconds S [--threads N]
//!
//! The client prints one JSON object: connections completed, errors, elapsed
//! seconds, the rate, and per-connection times (p50, p99, in microseconds).
//! Why not wrk with `Connection: close`: wrk needs an HTTP server, whose own
//! parsing and logging would be a large, case-independent part of each request;
//! this tool measures exactly the socket operations a mesh adds to.

use std::env;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A connection that takes longer than this is counted as an error.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn usage() -> ! {
    eprintln!(
        "usage: connrate server --listen ADDR:PORT [--threads N]\n       \
         connrate client --connect ADDR:PORT --seconds S [--threads N]"
    );
    exit(2);
}

struct Args {
    mode: String,
    addr: SocketAddr,
    seconds: f64,
    threads: usize,
}

fn parse_args() -> Args {
    let mut argv = env::args().skip(1);
    let mode = argv.next().unwrap_or_else(|| usage());
    let (mut addr, mut seconds, mut threads) = (None, 1.0, 1);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" | "--connect" => addr = value.parse().ok(),
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let addr = addr.unwrap_or_else(|| usage());
    if threads == 0 || !(seconds > 0.0) || !(mode == "server" || mode == "client") {
        usage();
    }
    Args {
        mode,
        addr,
        seconds,
        threads,
    }
}

/// Answers each connection's first byte with one byte, then closes. Every thread
/// blocks in accept() on the same listener; the kernel hands each connection to one.
fn serve(addr: SocketAddr, threads: usize) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|err| {
        eprintln!("connrate: bind {addr}: {err}");
        exit(1);
    });
    let listener = Arc::new(listener);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let listener = Arc::clone(&listener);
            thread::spawn(move || loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                        let mut byte = [0u8; 1];
                        if let Ok(1) = stream.read(&mut byte) {
                            let _ = stream.write_all(&byte);
                        }
                        // Dropping the stream closes it: the server closes first.
                    }
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(err) => {
                        eprintln!("connrate: accept: {err}");
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// One request; its duration, or the step that failed.
fn one_request(addr: &SocketAddr) -> Result<Duration, &'static str> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(addr, IO_TIMEOUT).map_err(|_| "connect")?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|_| "setsockopt")?;
    stream.write_all(b"x").map_err(|_| "write")?;
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(1..) => {}
        _ => return Err("first byte"),
    }
    // The server closes after its byte: read its FIN, then close our end.
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => return Err("extra bytes"),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err("close"),
        }
    }
    drop(stream);
    Ok(start.elapsed())
}

struct ThreadResult {
    times_ns: Vec<u64>,
    errors: u64,
    first_error: Option<&'static str>,
}

fn client(addr: SocketAddr, seconds: f64, threads: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut result = ThreadResult {
                    times_ns: Vec::with_capacity(1 << 16),
                    errors: 0,
                    first_error: None,
                };
                while !stop.load(Ordering::Relaxed) {
                    match one_request(&addr) {
                        Ok(took) => result.times_ns.push(took.as_nanos() as u64),
                        Err(step) => {
                            result.errors += 1;
                            result.first_error.get_or_insert(step);
                            // A refused or reset connection must not turn into a
                            // busy loop of errors.
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                result
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for worker in workers {
        let result = worker.join().expect("client thread");
        times.extend(result.times_ns);
        errors += result.errors;
        first_error = first_error.or(result.first_error);
    }
    // Every thread finishes the request it is in: that time counts too.
    let elapsed = start.elapsed().as_secs_f64();
    times.sort_unstable();
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        times[i] as f64 / 1000.0
    };
    println!(
        "{{\"connections\": {}, \"errors\": {}, \"first_error\": {}, \"seconds\": {:.6}, \
         \"rate\": {:.3}, \"p50_us\": {:.3}, \"p99_us\": {:.3}, \"threads\": {}}}",
        times.len(),
        errors,
        first_error.map_or("null".to_string(), |e| format!("\"{e}\"")),
        elapsed,
        times.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        threads
    );
}

fn main() {
    let args = parse_args();
    if args.mode == "server" {
        serve(args.addr, args.threads);
    } else {
        client(args.addr, args.seconds, args.threads);
    }
}
