//! The Kubernetes API client against a real HTTPS endpoint: a small rustls
//! server on 127.0.0.1 (tests/common/api_server.rs) with a CA and certificates
//! generated per test, serving Pod JSON from tests/fixtures/kube/. No root,
//! loopback only, nothing mocked below HTTP: TCP, TLS verification, bearer
//! tokens, client certificates, timeouts and retries all run for real.

mod common;

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use meshlane::kube::{fetch_pod, FetchPolicy, KubeAccess, KubeError};
use meshlane::policy::pod_meta::PodMeta;

use common::api_server::{status_json, ApiServer, Authority, Handler, Reply, Seen, ServerOptions};
use common::tmpdir::TempDir;

const SIDECAR_POD: &str = include_str!("fixtures/kube/sidecar-pod.json");
const PLAIN_POD: &str = include_str!("fixtures/kube/plain-pod.json");
const SIDECAR_PATH: &str = "/api/v1/namespaces/bookinfo/pods/reviews-v1-7d9c8f5b6-x2k4p";
const PLAIN_PATH: &str = "/api/v1/namespaces/default/pods/web-0";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.meshlane-test-token.sig";

/// Timing assertions leave this much room for a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(2);

/// Answers `path` with `body` when the bearer token is right; 401 otherwise;
/// 404 for any other path.
fn pod_handler(path: &'static str, body: &'static str, token: &'static str) -> Handler {
    Box::new(move |seen: &Seen| {
        if seen.authorization.as_deref() != Some(&format!("Bearer {token}")) {
            return Reply::Json(401, status_json(401, "Unauthorized", "Unauthorized"));
        }
        if seen.path == path {
            Reply::Json(200, body.to_owned())
        } else {
            Reply::Json(404, status_json(404, "NotFound", "pods not found"))
        }
    })
}

/// Plays the given replies in order, then repeats the last one.
fn scripted(replies: Vec<(u16, String)>) -> Handler {
    let replies = Mutex::new(VecDeque::from(replies));
    Box::new(move |_: &Seen| {
        let mut replies = replies.lock().unwrap();
        let (status, body) = if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        };
        Reply::Json(status, body)
    })
}

// ----------------------------------------------------------------- kubeconfig

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kubeconfig as the installer writes it: one context, the CA inline.
fn kubeconfig(server: &str, cluster_extra: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         current-context: meshlane\n\
         contexts:\n\
         - name: meshlane\n  context:\n    cluster: local\n    user: meshlane\n\
         clusters:\n\
         - name: local\n  cluster:\n    server: {server}\n{cluster_extra}\
         users:\n\
         - name: meshlane\n  user:\n{user}"
    )
}

fn ca_data(ca: &Authority) -> String {
    format!("    certificate-authority-data: {}\n", b64(&ca.pem()))
}

fn token_file_user(dir: &TempDir, token: &str) -> String {
    let file = dir.write("token", token);
    format!("    tokenFile: {}\n", file.display())
}

fn access(dir: &TempDir, text: &str) -> KubeAccess {
    let path = dir.write("kubeconfig", text);
    KubeAccess::from_kubeconfig(&path).unwrap_or_else(|err| panic!("{err}"))
}

/// An API server with the default options (a certificate for 127.0.0.1).
fn serve(ca: &Authority, handler: Handler) -> ApiServer {
    ApiServer::start(ca, ServerOptions::default(), handler)
}

/// Access through a kubeconfig with `ca` inline and the static test token.
fn token_access(dir: &TempDir, server: &str, ca: &Authority) -> KubeAccess {
    access(
        dir,
        &kubeconfig(server, &ca_data(ca), &format!("    token: {TOKEN}\n")),
    )
}

/// An API server under a fresh CA, and access to it with the static token
/// (the directory holds the kubeconfig for as long as the test keeps it).
fn token_setup(handler: Handler) -> (ApiServer, KubeAccess, TempDir) {
    let (ca, server, dir) = serve_with_ca(handler);
    let access = token_access(&dir, &server.url(), &ca);
    (server, access, dir)
}

/// The cluster's CA, an API server with a certificate of it answering with
/// `handler`, and a temp dir for the client's files.
fn serve_with_ca(handler: Handler) -> (Authority, ApiServer, TempDir) {
    let ca = Authority::new("cluster-ca");
    let server = serve(&ca, handler);
    (ca, server, TempDir::fresh())
}

/// `err` says the whole answer (not one field of it) is no pod: `problem`.
fn assert_malformed_document(err: &KubeError, problem: &str) {
    match err {
        KubeError::MalformedPod {
            path,
            problem: said,
        } => {
            assert_eq!(path, "(document)");
            assert!(said.contains(problem), "{said}");
        }
        other => panic!("{other:?}"),
    }
}

fn policy_ms(timeout: u64, attempts: u32, backoff: u64) -> FetchPolicy {
    FetchPolicy {
        timeout: Duration::from_millis(timeout),
        attempts,
        backoff: Duration::from_millis(backoff),
    }
}

/// Short timeouts keep the failure tests quick; retries stay on.
fn quick_policy() -> FetchPolicy {
    policy_ms(800, 3, 50)
}

/// A fetch that must fail: its error, and how long it took.
fn timed_failure(access: &KubeAccess, policy: &FetchPolicy) -> (KubeError, Duration) {
    let started = Instant::now();
    let err = fetch_pod(access, "default", "web-0", policy).unwrap_err();
    (err, started.elapsed())
}

/// Access with the static token to `url`, where no server of ours answers (the
/// CA is made up; the directory holds the kubeconfig while the test keeps it).
fn access_without_server(url: &str) -> (KubeAccess, TempDir) {
    let ca = Authority::new("cluster-ca");
    let dir = TempDir::fresh();
    let access = token_access(&dir, url, &ca);
    (access, dir)
}

/// The pod most tests ask for (PLAIN_PATH), with quick_policy().
fn fetch_web_0(access: &KubeAccess) -> Result<PodMeta, KubeError> {
    fetch_pod(access, "default", "web-0", &quick_policy())
}

// ---------------------------------------------------------------------- tests

#[test]
fn fetches_and_maps_an_injected_pod_with_a_bearer_token() {
    let (ca, server, dir) = serve_with_ca(pod_handler(SIDECAR_PATH, SIDECAR_POD, TOKEN));
    let access = access(
        &dir,
        &kubeconfig(&server.url(), &ca_data(&ca), &token_file_user(&dir, TOKEN)),
    );

    let pod = fetch_pod(
        &access,
        "bookinfo",
        "reviews-v1-7d9c8f5b6-x2k4p",
        &FetchPolicy::default(),
    )
    .unwrap_or_else(|err| panic!("{err}"));

    assert_eq!(pod.namespace, "bookinfo");
    assert_eq!(pod.name, "reviews-v1-7d9c8f5b6-x2k4p");
    assert!(pod
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("sidecar.istio.io/status"));
    assert_eq!(pod.labels.as_ref().unwrap()["app"], "reviews");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.init_containers, ["istio-validation"]);
    assert_eq!(spec.containers, ["reviews", "istio-proxy"]);
    let proxy = spec.proxy.as_ref().unwrap();
    assert_eq!(proxy.proxy_type(), Some("sidecar"));
    assert_eq!(proxy.env["ISTIO_META_DNS_CAPTURE"], "true");
    assert_eq!(
        (proxy.run_as_user, proxy.run_as_group),
        (Some(1337), Some(1337))
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, SIDECAR_PATH);
    assert_eq!(seen[0].accept.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn server_url_path_prefix_is_kept() {
    let ca = Authority::new("cluster-ca");
    let server = serve(
        &ca,
        pod_handler(
            "/k8s/clusters/c-7x2/api/v1/namespaces/default/pods/web-0",
            PLAIN_POD,
            TOKEN,
        ),
    );
    let dir = TempDir::fresh();
    let access = access(
        &dir,
        &kubeconfig(
            &format!("{}/k8s/clusters/c-7x2/", server.url()),
            &ca_data(&ca),
            &format!("    token: {TOKEN}\n"),
        ),
    );
    let pod = fetch_web_0(&access).unwrap();
    assert_eq!(pod.spec.unwrap().proxy, None);
}

#[test]
fn wrong_token_is_unauthorized_at_once_and_a_rotated_token_file_is_reread() {
    let (ca, server, dir) = serve_with_ca(pod_handler(PLAIN_PATH, PLAIN_POD, TOKEN));
    let user = token_file_user(&dir, "expired-token\n");
    let access = access(&dir, &kubeconfig(&server.url(), &ca_data(&ca), &user));

    let err = fetch_web_0(&access).unwrap_err();
    assert!(matches!(err, KubeError::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "unauthorized: the Kubernetes API server {}{PLAIN_PATH} rejected meshlane's \
             credentials (check the kubeconfig's token, tokenFile or client certificate): \
             Unauthorized",
            server.url()
        )
    );
    assert_eq!(server.seen().len(), 1, "a 401 is not retried");
    assert_eq!(
        server.seen()[0].authorization.as_deref(),
        Some("Bearer expired-token")
    );

    // The kubelet rotates the projected token; the same KubeAccess picks it up.
    dir.write("token", TOKEN);
    let pod = fetch_web_0(&access).unwrap();
    assert_eq!(pod.name, "web-0");
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn missing_pod_is_not_found_without_retry() {
    let (server, access, _dir) = token_setup(pod_handler(SIDECAR_PATH, SIDECAR_POD, TOKEN));
    let err = fetch_web_0(&access).unwrap_err();
    assert!(matches!(err, KubeError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "pod default/web-0 not found");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn forbidden_names_the_missing_permission() {
    let message =
        "pods \"web-0\" is forbidden: User \"system:serviceaccount:kube-system:meshlane\" \
                   cannot get resource \"pods\" in API group \"\" in the namespace \"default\"";
    let (server, access, _dir) = token_setup(scripted(vec![(
        403,
        status_json(403, "Forbidden", message),
    )]));
    let err = fetch_web_0(&access).unwrap_err();
    assert!(matches!(err, KubeError::Forbidden { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "forbidden: the service account needs get on pods (reading pod default/web-0): \
             {message}"
        )
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn server_errors_are_retried_until_success() {
    let busy = status_json(500, "InternalError", "etcdserver: leader changed");
    let (server, access, _dir) = token_setup(scripted(vec![
        (500, busy.clone()),
        (500, busy),
        (200, PLAIN_POD.to_owned()),
    ]));
    let pod = fetch_pod(&access, "default", "web-0", &FetchPolicy::default())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(pod.name, "web-0");
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn throttling_is_retried_too() {
    let (server, access, _dir) = token_setup(scripted(vec![
        (
            429,
            status_json(429, "TooManyRequests", "too many requests"),
        ),
        (200, PLAIN_POD.to_owned()),
    ]));
    assert!(fetch_web_0(&access).is_ok());
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_server_that_keeps_failing_exhausts_the_attempts() {
    let (server, access, _dir) = token_setup(scripted(vec![(
        503,
        status_json(503, "ServiceUnavailable", "apiserver is shutting down"),
    )]));
    let err = fetch_web_0(&access).unwrap_err();
    match &err {
        KubeError::ServerBusy {
            status, attempts, ..
        } => assert_eq!((*status, *attempts), (503, 3)),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .ends_with("answered HTTP 503 on all 3 attempt(s): apiserver is shutting down"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn unreachable_api_server_fails_cleanly_within_the_bound() {
    // A port that was just free: nothing listens, connections are refused.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("https://{closed}");
    let (access, _dir) = access_without_server(&url);
    let policy = FetchPolicy::default();
    let (err, elapsed) = timed_failure(&access, &policy);

    match &err {
        KubeError::Unreachable {
            url: failed,
            attempts,
            last_error,
        } => {
            assert_eq!(failed, &format!("{url}{PLAIN_PATH}"));
            assert_eq!(*attempts, 3);
            assert!(last_error.contains("refused"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with(&format!(
            "Kubernetes API server {url}{PLAIN_PATH} unreachable after 3 attempt(s)"
        )),
        "{err}"
    );
    let bound = policy.timeout * policy.attempts + SLACK;
    assert!(elapsed < bound, "took {elapsed:?}, bound {bound:?}");
    // The backoffs (200 ms + 400 ms) were waited: it did retry.
    assert!(elapsed >= Duration::from_millis(600), "took {elapsed:?}");
}

#[test]
fn a_server_that_never_completes_the_handshake_times_out() {
    // Listening but never accepting: the kernel completes TCP, nobody speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let (access, _dir) = access_without_server(&url);
    let policy = policy_ms(500, 2, 100);
    let (err, elapsed) = timed_failure(&access, &policy);

    match &err {
        KubeError::Unreachable {
            attempts,
            last_error,
            ..
        } => {
            assert_eq!(*attempts, 2);
            assert_eq!(last_error, "no answer within 500ms");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(2 * 500 + 100),
        "took {elapsed:?}"
    );
    assert!(elapsed < policy.worst_case() + SLACK, "took {elapsed:?}");
}

#[test]
fn a_server_that_never_answers_the_request_times_out() {
    let (server, access, _dir) = token_setup(Box::new(|_: &Seen| Reply::Silent));
    let policy = policy_ms(600, 2, 50);
    let (err, elapsed) = timed_failure(&access, &policy);
    assert!(
        matches!(&err, KubeError::Unreachable { last_error, .. } if last_error == "no answer within 600ms"),
        "{err:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(2 * 600),
        "took {elapsed:?}"
    );
    assert!(elapsed < policy.worst_case() + SLACK, "took {elapsed:?}");
    // Both attempts reached the server and were held unanswered.
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_wrong_ca_is_a_tls_error_without_retry() {
    let cluster_ca = Authority::new("cluster-ca");
    let other_ca = Authority::new("some-other-ca");
    let server = serve(&cluster_ca, pod_handler(PLAIN_PATH, PLAIN_POD, TOKEN));
    let dir = TempDir::fresh();
    let access = token_access(&dir, &server.url(), &other_ca);
    let err = fetch_web_0(&access).unwrap_err();
    assert!(matches!(err, KubeError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "TLS with the Kubernetes API server {}{PLAIN_PATH} failed: the server's certificate \
             is not signed by the configured certificate authority: invalid peer certificate: \
             UnknownIssuer (check the kubeconfig's certificate-authority / \
             certificate-authority-data against the server's certificate)",
            server.url()
        )
    );
    assert!(server.seen().is_empty(), "no request may leave before TLS");
    assert_eq!(server.connections(), 1, "a TLS failure is not retried");
}

#[test]
fn a_certificate_for_another_host_is_named() {
    let ca = Authority::new("cluster-ca");
    let server = ApiServer::start(
        &ca,
        ServerOptions {
            names: &["kubernetes.default.svc"],
            ..ServerOptions::default()
        },
        pod_handler(PLAIN_PATH, PLAIN_POD, TOKEN),
    );
    let dir = TempDir::fresh();
    let access = token_access(&dir, &server.url(), &ca);
    let err = fetch_web_0(&access).unwrap_err();
    match &err {
        KubeError::Tls { detail, .. } => assert!(
            detail.starts_with("the server's certificate does not name the host"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(server.seen().is_empty());
}

#[test]
fn client_certificate_authentication() {
    let cluster_ca = Authority::new("cluster-ca");
    let client_ca = Authority::new("client-ca");
    let client = client_ca.client_cert("system:node:meshlane");
    let server = ApiServer::start(
        &cluster_ca,
        ServerOptions {
            names: &["127.0.0.1"],
            client_ca: Some(client_ca.pem()),
            ..ServerOptions::default()
        },
        // The TLS layer authenticates; no bearer token is expected.
        Box::new(|seen: &Seen| {
            assert_eq!(seen.authorization, None);
            Reply::Json(200, PLAIN_POD.to_owned())
        }),
    );
    let dir = TempDir::fresh();
    dir.write("client.crt", &client.cert_pem);
    dir.write("client.key", &client.key_pem);

    // From files, relative to the kubeconfig.
    let with_files = access(
        &dir,
        &kubeconfig(
            &server.url(),
            &ca_data(&cluster_ca),
            "    client-certificate: client.crt\n    client-key: client.key\n",
        ),
    );
    let pod = fetch_pod(&with_files, "default", "web-0", &quick_policy())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(pod.name, "web-0");

    // Inline, as the installer may write it.
    let inline = access(
        &dir,
        &kubeconfig(
            &server.url(),
            &ca_data(&cluster_ca),
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&client.cert_pem),
                b64(&client.key_pem)
            ),
        ),
    );
    assert!(fetch_pod(&inline, "default", "web-0", &quick_policy()).is_ok());
    assert_eq!(server.seen().len(), 2);

    // Without a certificate the server refuses the handshake: a TLS error,
    // reported at once.
    let before = server.connections();
    let token_only = access(
        &dir,
        &kubeconfig(&server.url(), &ca_data(&cluster_ca), "    token: t\n"),
    );
    let err = fetch_pod(&token_only, "default", "web-0", &quick_policy()).unwrap_err();
    assert!(matches!(err, KubeError::Tls { .. }), "{err:?}");
    assert_eq!(server.connections() - before, 1);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn insecure_skip_tls_verify_connects_without_a_ca() {
    let (_ca, server, dir) = serve_with_ca(pod_handler(PLAIN_PATH, PLAIN_POD, TOKEN));
    let access = access(
        &dir,
        &kubeconfig(
            &server.url(),
            "    insecure-skip-tls-verify: true\n",
            &format!("    token: {TOKEN}\n"),
        ),
    );
    assert!(fetch_web_0(&access).is_ok());
}

#[test]
fn malformed_answers_name_the_path() {
    let (_server, access, _dir) = token_setup(scripted(vec![
        (
            200,
            r#"{"kind":"Pod","metadata":{"namespace":"default","name":"web-0"},
                    "spec":{"hostUsers":"no"}}"#
                .to_owned(),
        ),
        (200, "<html>login</html>".to_owned()),
    ]));
    let err = fetch_web_0(&access).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed Pod JSON at spec.hostUsers: expected a boolean, found a string"
    );
    let err = fetch_web_0(&access).unwrap_err();
    assert_malformed_document(&err, "is not JSON");
}

#[test]
fn an_oversized_answer_is_refused_without_retry() {
    let huge = format!("{{\"padding\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let (server, access, _dir) = token_setup(scripted(vec![(200, huge)]));
    let err = fetch_web_0(&access).unwrap_err();
    assert_malformed_document(&err, "larger than 4194304 bytes");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn invalid_pod_references_never_reach_the_server() {
    let (server, access, _dir) = token_setup(pod_handler(PLAIN_PATH, PLAIN_POD, TOKEN));
    let err = fetch_pod(&access, "default", "../secrets/x", &quick_policy()).unwrap_err();
    assert!(matches!(err, KubeError::InvalidPodRef { .. }), "{err:?}");
    assert_eq!(server.connections(), 0);
}
