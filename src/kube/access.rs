//! [`KubeAccess`]: the API server's address, the TLS settings to reach it and
//! meshlane's credentials, built once from a kubeconfig file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use super::error::KubeError;
use super::kubeconfig::{self, PemSource, ResolvedKubeconfig, Sourced, TokenSource};

/// How meshlane reaches the Kubernetes API server.
pub struct KubeAccess {
    kubeconfig: PathBuf,
    server: String,
    tls: TlsConfig,
    token: Option<Sourced<TokenSource>>,
}

/// Credentials stay out of logs, even in `{:?}`.
impl std::fmt::Debug for KubeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAccess")
            .field("kubeconfig", &self.kubeconfig)
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|token| &token.value))
            .field("client_cert", &self.tls.client_cert().is_some())
            .field("skip_tls_verify", &self.tls.disable_verification())
            .finish()
    }
}

impl KubeAccess {
    /// Reads the kubeconfig, its current context's cluster and user, and the
    /// certificate files they name. A token file is only checked at each
    /// request, because projected tokens rotate.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, KubeError> {
        let text = fs::read_to_string(path).map_err(|source| KubeError::KubeconfigRead {
            path: path.to_owned(),
            source,
        })?;
        let resolved = kubeconfig::resolve(&text, path)?;
        Self::from_resolved(path, resolved)
    }

    /// What a pod uses to reach the API server (client-go's in-cluster config):
    /// `server` from `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's
    /// `ca.crt` and `token` in `account_dir`. The token is read at each
    /// request: projected tokens rotate.
    pub fn in_cluster(server: &str, account_dir: &Path) -> Result<Self, KubeError> {
        let resolved = ResolvedKubeconfig {
            server: server.trim_end_matches('/').to_owned(),
            certificate_authority: Some(Sourced {
                value: PemSource::File(account_dir.join("ca.crt")),
                field: "service account ca.crt".to_owned(),
            }),
            insecure_skip_tls_verify: false,
            client_cert: None,
            token: Some(Sourced {
                value: TokenSource::File(account_dir.join("token")),
                field: "service account token".to_owned(),
            }),
        };
        // Errors then read "kubeconfig <account dir>: service account token ...".
        Self::from_resolved(account_dir, resolved)
    }

    fn from_resolved(path: &Path, resolved: ResolvedKubeconfig) -> Result<Self, KubeError> {
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &resolved.certificate_authority {
            let certs = certificates(&read_pem(path, ca)?)
                .map_err(|problem| field_error(path, &ca.field, problem))?;
            tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
        } else {
            // No CA in the kubeconfig: a managed cluster with a publicly
            // trusted certificate, checked against the Mozilla roots built in.
            tls = tls.root_certs(RootCerts::WebPki);
        }
        if resolved.insecure_skip_tls_verify {
            crate::log_warn!(
                "kubeconfig {}: insecure-skip-tls-verify is true: the Kubernetes API server {} \
                 is not authenticated, and meshlane's credentials go to whoever answers",
                path.display(),
                resolved.server
            );
            tls = tls.disable_verification(true);
        }
        if let Some((cert, key)) = &resolved.client_cert {
            let chain = certificates(&read_pem(path, cert)?)
                .map_err(|problem| field_error(path, &cert.field, problem))?;
            let key_pem = read_pem(path, key)?;
            let key_der = PrivateKey::from_pem(&key_pem).map_err(|err| {
                field_error(path, &key.field, format!("no usable private key: {err}"))
            })?;
            check_key_pair(&chain, &key_pem).map_err(|problem| {
                field_error(path, &key.field, format!("{problem} (with {})", cert.field))
            })?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key_der)));
        }

        Ok(KubeAccess {
            kubeconfig: path.to_owned(),
            server: resolved.server,
            tls: tls.build(),
            token: resolved.token,
        })
    }

    /// The API server's base URL (`https://host:port[/prefix]`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The bearer token to send, read now (a token file can have rotated since
    /// the last call).
    pub(crate) fn bearer_token(&self) -> Result<Option<String>, KubeError> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        match &token.value {
            TokenSource::Inline(text) => Ok(Some(text.clone())),
            TokenSource::File(file) => {
                let text =
                    fs::read_to_string(file).map_err(|source| KubeError::ReferencedFile {
                        kubeconfig: self.kubeconfig.clone(),
                        field: token.field.clone(),
                        path: file.clone(),
                        source,
                    })?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(field_error(
                        &self.kubeconfig,
                        &token.field,
                        format!("{} is empty", file.display()),
                    ));
                }
                Ok(Some(text.to_owned()))
            }
        }
    }

    /// An HTTP agent for one fetch: `timeout` bounds each request as a whole
    /// (resolve, connect, TLS handshake, response).
    pub(crate) fn agent(&self, timeout: Duration) -> Agent {
        Agent::config_builder()
            .tls_config(self.tls.clone())
            .timeout_global(Some(timeout))
            // Statuses are classified by the caller (401 fails at once, 5xx is
            // retried), so they arrive as responses, not errors.
            .http_status_as_error(false)
            // The API server does not redirect a GET of a pod; following one
            // would carry the token elsewhere.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // Runtimes often run with HTTP(S)_PROXY set for image pulls; the
            // API server is reached directly (proxy-url is refused in parsing).
            .proxy(None)
            .user_agent(concat!("meshlane/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    }
}

fn read_pem(kubeconfig: &Path, source: &Sourced<PemSource>) -> Result<Vec<u8>, KubeError> {
    match &source.value {
        PemSource::Inline(bytes) => Ok(bytes.clone()),
        PemSource::File(file) => fs::read(file).map_err(|err| KubeError::ReferencedFile {
            kubeconfig: kubeconfig.to_owned(),
            field: source.field.clone(),
            path: file.clone(),
            source: err,
        }),
    }
}

/// Every certificate in a PEM bundle (a CA file often holds several).
fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(err) => return Err(format!("not valid PEM: {err}")),
        }
    }
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}

/// Loads the key as the handshake will and compares it with the certificate,
/// so a wrong or broken key is reported here, naming the field, rather than as
/// an opaque handshake failure on every ADD.
fn check_key_pair(chain: &[Certificate<'static>], key_pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key_der = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| format!("no usable private key: {err}"))?;
    let chain = chain
        .iter()
        .map(|cert| CertificateDer::from(cert.der().to_vec()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, key_der, &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("the private key does not belong to the client certificate".to_owned())
        }
        Err(err) => Err(format!("no usable private key: {err}")),
    }
}

fn field_error(kubeconfig: &Path, field: &str, problem: impl Into<String>) -> KubeError {
    KubeError::KubeconfigField {
        path: kubeconfig.to_owned(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::{scratch, ScratchDir};
    use base64::Engine as _;

    /// A self-signed certificate and its key, PEM.
    fn cert_and_key(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn kubeconfig(cluster: &str, user: &str) -> String {
        format!(
            "current-context: ctx\n\
             contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]\n\
             clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster}\
             users:\n- name: u\n  user:\n{user}"
        )
    }

    /// Writes `dir/kubeconfig` with these cluster and user fields and loads it.
    fn load(dir: &ScratchDir, cluster: &str, user: &str) -> Result<KubeAccess, KubeError> {
        KubeAccess::from_kubeconfig(&dir.write("kubeconfig", &kubeconfig(cluster, user)))
    }

    #[test]
    fn ca_file_and_rotating_token_file() {
        let dir = scratch("kube-access");
        let (ca, _) = cert_and_key("ca.test");
        dir.write("ca.crt", &ca);
        let token_file = dir.write("token", "first-token\n");
        let access = load(
            &dir,
            "    certificate-authority: ca.crt\n",
            "    tokenFile: token\n",
        )
        .unwrap();
        assert_eq!(access.server(), "https://127.0.0.1:6443");
        assert_eq!(
            access.bearer_token().unwrap().as_deref(),
            Some("first-token")
        );
        assert!(matches!(access.tls.root_certs(), RootCerts::Specific(certs) if certs.len() == 1));
        assert!(!access.tls.disable_verification());

        // Projected tokens rotate under a running node: every call reads anew.
        fs::write(&token_file, "second-token").unwrap();
        assert_eq!(
            access.bearer_token().unwrap().as_deref(),
            Some("second-token")
        );

        fs::write(&token_file, " \n").unwrap();
        let err = access.bearer_token().unwrap_err();
        assert!(
            matches!(&err, KubeError::KubeconfigField { field, .. } if field == "users[u].user.tokenFile"),
            "{err:?}"
        );
        assert!(err.to_string().ends_with("is empty"), "{err}");

        fs::remove_file(&token_file).unwrap();
        match access.bearer_token().unwrap_err() {
            KubeError::ReferencedFile { field, path, .. } => {
                assert_eq!(field, "users[u].user.tokenFile");
                assert_eq!(path, token_file);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ca_bundle_data_and_client_certificate_data() {
        let dir = scratch("kube-access");
        let (ca1, _) = cert_and_key("ca1.test");
        let (ca2, _) = cert_and_key("ca2.test");
        let (client, key) = cert_and_key("meshlane");
        let access = load(
            &dir,
            &format!("    certificate-authority-data: {}\n", b64(&(ca1 + &ca2))),
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&client),
                b64(&key)
            ),
        )
        .unwrap();
        assert!(matches!(access.tls.root_certs(), RootCerts::Specific(certs) if certs.len() == 2));
        let client_cert = access
            .tls
            .client_cert()
            .expect("client certificate configured");
        assert_eq!(client_cert.certs().len(), 1);
        assert_eq!(access.bearer_token().unwrap(), None);
    }

    #[test]
    fn client_certificate_files() {
        let dir = scratch("kube-access");
        let (client, key) = cert_and_key("meshlane");
        dir.write("client.crt", &client);
        dir.write("client.key", &key);
        let access = load(
            &dir,
            "    insecure-skip-tls-verify: true\n",
            "    client-certificate: client.crt\n    client-key: client.key\n",
        )
        .unwrap();
        assert!(access.tls.client_cert().is_some());
        assert!(access.tls.disable_verification());
    }

    #[test]
    fn unreadable_and_unusable_files_are_named() {
        let dir = scratch("kube-access");
        let (cert, _) = cert_and_key("x");
        let (_, other_key) = cert_and_key("y");
        dir.write("other.key", &other_key);
        dir.write("not-a-cert.pem", "hello\n");
        dir.write("client.crt", &cert);
        dir.write(
            "bad.key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let cases = [
            (
                "    certificate-authority: missing.crt\n",
                "    token: t\n",
                "clusters[c].cluster.certificate-authority",
            ),
            (
                "    certificate-authority: not-a-cert.pem\n",
                "    token: t\n",
                "clusters[c].cluster.certificate-authority",
            ),
            (
                "",
                "    client-certificate: client.crt\n    client-key: missing.key\n",
                "users[u].user.client-key",
            ),
            (
                "",
                "    client-certificate: client.crt\n    client-key: bad.key\n",
                "users[u].user.client-key",
            ),
            (
                "",
                "    client-certificate: not-a-cert.pem\n    client-key: bad.key\n",
                "users[u].user.client-certificate",
            ),
            (
                "",
                "    client-certificate: client.crt\n    client-key: other.key\n",
                "users[u].user.client-key",
            ),
        ];
        for (cluster, user, expected_field) in cases {
            let path = dir.write("kubeconfig", &kubeconfig(cluster, user));
            let err = KubeAccess::from_kubeconfig(&path).unwrap_err();
            let field = match &err {
                KubeError::ReferencedFile { field, path, .. } => {
                    assert!(path.starts_with(&*dir), "{path:?}");
                    field
                }
                KubeError::KubeconfigField { field, .. } => field,
                other => panic!("{cluster}{user}: {other:?}"),
            };
            assert_eq!(field, expected_field, "{err}");
        }

        let path = dir.write(
            "kubeconfig",
            &kubeconfig(
                "",
                "    client-certificate: client.crt\n    client-key: other.key\n",
            ),
        );
        assert_eq!(
            KubeAccess::from_kubeconfig(&path).unwrap_err().to_string(),
            format!(
                "kubeconfig {}: users[u].user.client-key: the private key does not belong to the \
                 client certificate (with users[u].user.client-certificate)",
                path.display()
            )
        );

        let path = dir.write(
            "kubeconfig",
            &kubeconfig(
                "    certificate-authority: not-a-cert.pem\n",
                "    token: t\n",
            ),
        );
        assert_eq!(
            KubeAccess::from_kubeconfig(&path).unwrap_err().to_string(),
            format!(
                "kubeconfig {}: clusters[c].cluster.certificate-authority: holds no PEM \
                 certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )
        );
    }

    #[test]
    fn missing_kubeconfig() {
        let dir = scratch("kube-access");
        let path = dir.join("absent");
        let err = KubeAccess::from_kubeconfig(&path).unwrap_err();
        assert!(
            matches!(&err, KubeError::KubeconfigRead { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with(&format!("reading kubeconfig {}", path.display())));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let dir = scratch("kube-access");
        let path = dir.write("kubeconfig", &kubeconfig("", "    token: s3cr3t\n"));
        let access = KubeAccess::from_kubeconfig(&path).unwrap();
        let debug = format!("{access:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("https://127.0.0.1:6443"), "{debug}");
    }
}
