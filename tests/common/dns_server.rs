//! A DNS server for one name, on UDP port 53 of 127.0.0.1 inside a netns the
//! test created: enough for a resolver (glibc's, in the static binary) to
//! find the API server by hostname the way a pod's cluster DNS would answer.
//! It answers A queries for its name with 127.0.0.1, other types of that name
//! with no records, and any other name with NXDOMAIN; it counts the queries.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;

pub struct DnsServer {
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The question of a query: (name, type, end of the question section).
fn question(packet: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Queries carry no compression pointers (0xc0); refuse them.
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn answer(packet: &[u8], name: &str) -> Option<(Vec<u8>, String, u16)> {
    let (asked, qtype, end) = question(packet)?;
    let known = asked == name;
    let with_record = known && qtype == TYPE_A;
    let mut reply = packet.get(..end)?.to_vec();
    // QR, opcode 0, RD copied, RA; rcode 3 (NXDOMAIN) for an unknown name.
    reply[2] = 0x80 | (packet[2] & 0x01);
    reply[3] = 0x80 | if known { 0 } else { 3 };
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(with_record), 0, 0, 0, 0]);
    if with_record {
        // The name by a pointer to the question, IN A, TTL 60, 127.0.0.1.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some((reply, asked, qtype))
}

impl DnsServer {
    /// Listens on 127.0.0.1:53 inside `netns` and answers for `name`.
    pub fn start(netns: &Path, name: &str) -> DnsServer {
        let socket = super::netns::in_netns(netns, || UdpSocket::bind("127.0.0.1:53"))
            .unwrap()
            .unwrap_or_else(|err| panic!("binding 127.0.0.1:53 in {}: {err}", netns.display()));
        // Wakes the loop now and then to see the stop flag.
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (queries, stop, name) = (queries.clone(), stop.clone(), name.to_lowercase());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some((reply, asked, qtype)) = answer(&buf[..len], &name) {
                        queries.lock().unwrap().push((asked, qtype));
                        let _ = socket.send_to(&reply, from);
                    }
                }
            })
        };
        DnsServer {
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// The A queries seen, by name.
    pub fn a_queries(&self) -> Vec<String> {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, qtype)| *qtype == TYPE_A)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
