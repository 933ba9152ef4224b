//! A stand-in Kubernetes API server for tests: a small rustls HTTPS server on
//! 127.0.0.1 with a CA and certificates generated per test, answering each
//! request with what a handler says. Nothing below HTTP is mocked: TCP, TLS
//! verification, bearer tokens and client certificates run for real. Loopback
//! only, no root needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

// ---------------------------------------------------------------- certificates

/// A certificate authority that can issue server and client certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

pub struct Issued {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Authority { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn issue(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Issued {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "meshlane-test");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    pub fn server_cert(&self, names: &[&str]) -> Issued {
        self.issue(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn client_cert(&self, user: &str) -> Issued {
        self.issue(&[user], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }
}

// ------------------------------------------------------------- the API server

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    /// The request's body (a PATCH's), empty for a GET.
    pub body: Vec<u8>,
}

pub enum Reply {
    Json(u16, String),
    /// Read the request, then never answer (until the client hangs up).
    Silent,
}

/// A kubeconfig for `server` (its CA `ca_pem`) with a bearer token, as the
/// plugin reads one.
pub fn token_kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca_data}\nusers:\n- name: u\n  user:\n    token: {token}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
    )
}

pub fn status_json(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

pub type Handler = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct ServerOptions {
    pub names: &'static [&'static str],
    pub client_ca: Option<String>,
    /// Listen inside this network namespace (a test node's, where the plugin
    /// or the agent runs) instead of the test's own.
    pub netns: Option<std::path::PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            names: &["127.0.0.1", "localhost"],
            client_ca: None,
            netns: None,
        }
    }
}

/// A TLS HTTP/1.1 server on 127.0.0.1 that answers one request per
/// connection with what the handler says. Stopped and joined on drop.
pub struct ApiServer {
    pub addr: SocketAddr,
    /// Connections accepted, including ones whose handshake failed.
    connections: Arc<AtomicUsize>,
    /// The listener, to wake the accepting thread from any netns on drop.
    wake: TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub fn start(ca: &Authority, options: ServerOptions, handler: Handler) -> Self {
        let issued = ca.server_cert(options.names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match &options.client_ca {
            None => builder.with_no_client_auth(),
            Some(client_ca_pem) => {
                let mut roots = RootCertStore::empty();
                for cert in rustls_pemfile_certs(client_ca_pem) {
                    roots.add(cert).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = Arc::new(
            builder
                .with_single_cert(
                    vec![issued.cert_der],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der)),
                )
                .unwrap(),
        );

        let listener = match &options.netns {
            None => TcpListener::bind("127.0.0.1:0").unwrap(),
            Some(netns) => {
                // A socket stays in the netns it was made in; the guard only
                // has to last for the bind.
                let _inside = meshlane::netns::NetnsGuard::enter(netns)
                    .unwrap_or_else(|err| panic!("enter {}: {err}", netns.display()));
                TcpListener::bind("127.0.0.1:0").unwrap()
            }
        };
        let wake = listener.try_clone().unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, seen, stop) = (connections.clone(), seen.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    serve(stream, config.clone(), &handler, &seen);
                }
            })
        };
        ApiServer {
            addr,
            wake,
            connections,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag: shutting the
        // listener down makes accept fail at once, wherever it listens (a
        // connect would not reach a listener in another netns).
        // SAFETY: the fd belongs to `self.wake`, which is alive here.
        unsafe { libc::shutdown(self.wake.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|cert| cert.unwrap())
        .collect()
}

/// One connection: TLS handshake, one request, one answer. Failures (a client
/// that rejected our certificate, say) just end the connection.
fn serve(stream: TcpStream, config: Arc<ServerConfig>, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    // Bounds a test that goes wrong; never reached when tests pass.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(connection) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(connection, stream);
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    let head_end = request
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(request.len(), |at| at + 4);
    let mut body = request.split_off(head_end);
    let text = String::from_utf8_lossy(&request).into_owned();
    let mut lines = text.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let header = |name: &str| {
        text.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
    };
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while body.len() < length.min(1 << 20) {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let request = Seen {
        method: start.next().unwrap_or_default().to_owned(),
        path: start.next().unwrap_or_default().to_owned(),
        authorization: header("authorization"),
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    };
    seen.lock().unwrap().push(request.clone());

    match handler(&request) {
        Reply::Json(status, body) => {
            let reason = match status {
                200 => "OK",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "Not Found",
                409 => "Conflict",
                415 => "Unsupported Media Type",
                422 => "Unprocessable Entity",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                503 => "Service Unavailable",
                _ => "Other",
            };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(head.as_bytes());
            let _ = tls.write_all(body.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        Reply::Silent => {
            // Hold the connection until the client gives up and closes it.
            while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// A stand-in in `node`'s netns, where the plugin runs, with a CA of its own; the
/// kubeconfig the plugin reads it with (a bearer token) is written to `kubeconfig`.
pub fn for_plugin(
    node: &super::node::TestNode,
    kubeconfig: &std::path::Path,
    handler: Handler,
) -> ApiServer {
    let ca = Authority::new("plugin-api");
    let api = ApiServer::start(
        &ca,
        ServerOptions {
            netns: Some(node.layout().node_netns.clone()),
            ..ServerOptions::default()
        },
        handler,
    );
    std::fs::write(kubeconfig, token_kubeconfig(&api.url(), &ca.pem(), "t")).unwrap();
    api
}
