//! The kubeconfig subset meshlane reads, and its resolution to one cluster and
//! one user through `current-context`. Pure: file references are resolved to
//! paths here and read by [`super::access`].
//!
//! Read (everything else is ignored, as kubectl ignores what it does not use):
//! ```yaml
//! current-context: meshlane
//! contexts:
//! - name: meshlane
//!   context: {cluster: local, user: meshlane}
//! clusters:
//! - name: local
//!   cluster:
//!     server: https://10.96.0.1:443          # https only
//!     certificate-authority-data: <base64 PEM>  # or certificate-authority: <path>
//!     # insecure-skip-tls-verify: true        # accepted, with a warning
//! users:
//! - name: meshlane
//!   user:
//!     tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token  # re-read per call
//!     # token: <bearer token>
//!     # client-certificate(-data) + client-key(-data)
//! ```
//! Relative paths are relative to the kubeconfig's directory, as kubectl reads
//! them. Authentication meshlane cannot perform (`exec`, `auth-provider`,
//! basic auth, impersonation) and connection settings it does not implement
//! (`proxy-url`, `tls-server-name`) are refused by name rather than ignored:
//! ignoring them would fail later with a misleading 401 or TLS error.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::error::KubeError;

/// Where a PEM blob comes from: inline (`*-data`, base64-decoded) or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemSource {
    Inline(Vec<u8>),
    File(PathBuf),
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Inline(String),
    /// Projected service-account tokens rotate: read at every call.
    File(PathBuf),
}

/// Tokens never reach a log line, not even through `{:?}`.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// One source with the kubeconfig field it came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub field: String,
}

/// The current context's cluster and user, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedKubeconfig {
    /// `https://host[:port][/prefix]`, without a trailing slash.
    pub server: String,
    pub certificate_authority: Option<Sourced<PemSource>>,
    pub insecure_skip_tls_verify: bool,
    /// Certificate chain and private key.
    pub client_cert: Option<(Sourced<PemSource>, Sourced<PemSource>)>,
    pub token: Option<Sourced<TokenSource>>,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    clusters: Option<Vec<Named<Cluster>>>,
    contexts: Option<Vec<Named<Context>>>,
    users: Option<Vec<Named<User>>>,
}

/// kubeconfig lists are `- name: x` + one field holding the entry (`cluster`,
/// `context` or `user`); the alias lets one type read all three.
#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    entry: Option<T>,
}

#[derive(Deserialize, Default, Clone)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<IgnoredAny>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<IgnoredAny>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
}

/// Parses kubeconfig text (YAML; JSON is valid YAML) and resolves the current
/// context. `path` names the file in errors; relative file references are
/// resolved against its directory.
pub(crate) fn resolve(text: &str, path: &Path) -> Result<ResolvedKubeconfig, KubeError> {
    let config: Kubeconfig =
        serde_saphyr::from_str(text).map_err(|err| KubeError::KubeconfigSyntax {
            path: path.to_owned(),
            // No source snippet: the offending line may hold a token, and the
            // log takes one line per event.
            detail: err.without_snippet().to_string().replace('\n', " "),
        })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let field_error = |field: &str, problem: &str| KubeError::KubeconfigField {
        path: path.to_owned(),
        field: field.to_owned(),
        problem: problem.to_owned(),
    };

    let context_name = non_empty(config.current_context.as_deref())
        .ok_or_else(|| field_error("current-context", "not set (name one of contexts)"))?;
    let context = find(&config.contexts, context_name).ok_or_else(|| {
        field_error(
            "current-context",
            &format!("names context {context_name:?}, which is not in contexts"),
        )
    })?;
    let context_field = format!("contexts[{context_name}].context");
    let cluster_name = non_empty(context.cluster.as_deref())
        .ok_or_else(|| field_error(&format!("{context_field}.cluster"), "not set"))?;
    let user_name = non_empty(context.user.as_deref())
        .ok_or_else(|| field_error(&format!("{context_field}.user"), "not set"))?;
    let cluster = find(&config.clusters, cluster_name).ok_or_else(|| {
        field_error(
            &format!("{context_field}.cluster"),
            &format!("names cluster {cluster_name:?}, which is not in clusters"),
        )
    })?;
    let user = find(&config.users, user_name).ok_or_else(|| {
        field_error(
            &format!("{context_field}.user"),
            &format!("names user {user_name:?}, which is not in users"),
        )
    })?;

    let cluster_field = format!("clusters[{cluster_name}].cluster");
    let user_field = format!("users[{user_name}].user");
    let fields = Fields {
        kubeconfig: path,
        base_dir,
    };
    let (server, certificate_authority, insecure_skip_tls_verify) =
        fields.cluster(&cluster, &cluster_field)?;
    let (client_cert, token) = fields.user(&user, &user_field)?;

    Ok(ResolvedKubeconfig {
        server,
        certificate_authority,
        insecure_skip_tls_verify,
        client_cert,
        token,
    })
}

type ClusterParts = (String, Option<Sourced<PemSource>>, bool);
type UserParts = (
    Option<(Sourced<PemSource>, Sourced<PemSource>)>,
    Option<Sourced<TokenSource>>,
);

struct Fields<'a> {
    kubeconfig: &'a Path,
    base_dir: &'a Path,
}

impl Fields<'_> {
    fn error(&self, field: String, problem: impl Into<String>) -> KubeError {
        KubeError::KubeconfigField {
            path: self.kubeconfig.to_owned(),
            field,
            problem: problem.into(),
        }
    }

    /// The first field of `at` that is set but not supported, as the error:
    /// (is it set, its name, why it is refused).
    fn refuse_set(&self, at: &str, fields: &[(bool, &str, &str)]) -> Result<(), KubeError> {
        match fields.iter().find(|(set, _, _)| *set) {
            Some((_, field, why)) => Err(self.error(format!("{at}.{field}"), *why)),
            None => Ok(()),
        }
    }

    fn cluster(&self, cluster: &Cluster, at: &str) -> Result<ClusterParts, KubeError> {
        let server = non_empty(cluster.server.as_deref())
            .ok_or_else(|| self.error(format!("{at}.server"), "not set"))?;
        let server = validate_server(server).map_err(|problem| {
            self.error(format!("{at}.server"), format!("{server:?}: {problem}"))
        })?;
        self.refuse_set(
            at,
            &[
                (
                    cluster.tls_server_name.is_some(),
                    "tls-server-name",
                    "not supported by meshlane; put a name the server's certificate holds in server",
                ),
                (
                    cluster.proxy_url.is_some(),
                    "proxy-url",
                    "not supported by meshlane; the node must reach the API server directly",
                ),
            ],
        )?;
        let certificate_authority = self.pem(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
            at,
            "certificate-authority",
        )?;
        let insecure = cluster.insecure_skip_tls_verify.unwrap_or(false);
        if insecure {
            if let Some(ca) = &certificate_authority {
                // kubectl refuses the same combination: one of them is a mistake.
                return Err(self.error(
                    format!("{at}.insecure-skip-tls-verify"),
                    format!("true together with {}; remove one", ca.field),
                ));
            }
        }
        Ok((server, certificate_authority, insecure))
    }

    fn user(&self, user: &User, at: &str) -> Result<UserParts, KubeError> {
        let unsupported = "not supported by meshlane; use token, tokenFile or a client certificate";
        self.refuse_set(
            at,
            &[
                (user.exec.is_some(), "exec", unsupported),
                (user.auth_provider.is_some(), "auth-provider", unsupported),
                (
                    user.username.is_some() || user.password.is_some(),
                    "username",
                    unsupported,
                ),
                (user.impersonate.is_some(), "as", unsupported),
            ],
        )?;

        let cert = self.pem(
            user.client_certificate_data.as_deref(),
            user.client_certificate.as_deref(),
            at,
            "client-certificate",
        )?;
        let key = self.pem(
            user.client_key_data.as_deref(),
            user.client_key.as_deref(),
            at,
            "client-key",
        )?;
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.error(
                    format!("{at}.client-key"),
                    "missing: client-certificate needs client-key or client-key-data",
                ))
            }
            (None, Some(_)) => {
                return Err(self.error(
                    format!("{at}.client-certificate"),
                    "missing: client-key needs client-certificate or client-certificate-data",
                ))
            }
        };

        // Like client-go, a tokenFile wins over an inline token: it is the one
        // that stays current when the token rotates.
        let token = if let Some(file) = non_empty(user.token_file.as_deref()) {
            Some(Sourced {
                value: TokenSource::File(self.base_dir.join(file)),
                field: format!("{at}.tokenFile"),
            })
        } else if let Some(token) = user.token.as_deref() {
            let token = token.trim();
            if token.is_empty() {
                return Err(self.error(format!("{at}.token"), "empty"));
            }
            Some(Sourced {
                value: TokenSource::Inline(token.to_owned()),
                field: format!("{at}.token"),
            })
        } else {
            None
        };

        if client_cert.is_none() && token.is_none() {
            return Err(self.error(
                at.to_owned(),
                "no credentials: set token, tokenFile, or client-certificate(-data) with \
                 client-key(-data)",
            ));
        }
        Ok((client_cert, token))
    }

    /// `<name>-data` (base64) or `<name>` (a path); both at once is ambiguous.
    fn pem(
        &self,
        data: Option<&str>,
        file: Option<&str>,
        at: &str,
        name: &str,
    ) -> Result<Option<Sourced<PemSource>>, KubeError> {
        let data = non_empty(data);
        let file = non_empty(file);
        match (data, file) {
            (Some(_), Some(_)) => Err(self.error(
                format!("{at}.{name}-data"),
                format!("set together with {name}; keep one"),
            )),
            (Some(data), None) => {
                let field = format!("{at}.{name}-data");
                // Writers wrap long base64 lines; whitespace is never data.
                let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|err| self.error(field.clone(), format!("not base64: {err}")))?;
                Ok(Some(Sourced {
                    value: PemSource::Inline(bytes),
                    field,
                }))
            }
            (None, Some(file)) => Ok(Some(Sourced {
                value: PemSource::File(self.base_dir.join(file)),
                field: format!("{at}.{name}"),
            })),
            (None, None) => Ok(None),
        }
    }
}

/// The entry of that name; an entry listed without its body (`- name: x`)
/// reads as empty, so the error names the missing field inside it.
fn find<T: Default + Clone>(list: &Option<Vec<Named<T>>>, name: &str) -> Option<T> {
    list.as_deref()?
        .iter()
        .find(|named| named.name == name)
        .map(|named| named.entry.clone().unwrap_or_default())
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Accepts `https://host[:port][/prefix]` and returns it without a trailing
/// slash. meshlane never sends a token over plain HTTP.
fn validate_server(server: &str) -> Result<String, &'static str> {
    let uri: ureq::http::Uri = server
        .parse()
        .map_err(|_| "not a URL (expected https://host[:port])")?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an https:// URL (meshlane sends credentials only over TLS)");
    }
    let Some(authority) = uri.authority() else {
        return Err("has no host");
    };
    if authority.host().is_empty() {
        return Err("has no host");
    }
    if authority.as_str().contains('@') {
        return Err("must not carry user information");
    }
    if uri.query().is_some() {
        return Err("must not have a query");
    }
    Ok(server.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/cni/net.d/meshlane.d/kubeconfig";

    fn resolve_ok(text: &str) -> ResolvedKubeconfig {
        resolve(text, Path::new(PATH)).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The field named by a KubeconfigField error, and its problem.
    fn field_error(text: &str) -> (String, String) {
        match resolve(text, Path::new(PATH)) {
            Err(KubeError::KubeconfigField {
                path,
                field,
                problem,
            }) => {
                assert_eq!(path, Path::new(PATH));
                (field, problem)
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    /// A kubeconfig with one context `ctx` → cluster `c`, user `u`.
    fn config(cluster: &str, user: &str) -> String {
        let indent = |block: &str| {
            block
                .lines()
                .map(|line| format!("    {line}\n"))
                .collect::<String>()
        };
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n\
             contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: kube-system\n\
             clusters:\n- name: other\n  cluster:\n    server: https://elsewhere:6443\n\
             - name: c\n  cluster:\n{}\
             users:\n- name: u\n  user:\n{}",
            indent(cluster),
            indent(user)
        )
    }

    const SERVER: &str = "server: https://10.96.0.1:443";

    #[test]
    fn inline_token_and_ca_data() {
        // The CA as a writer wraps it: base64 over several lines.
        let data = "LS0tLS1CRUdJTi\n  BDRVJUSUZJQ0FURS0tLS0t";
        let resolved = resolve_ok(&config(
            &format!("{SERVER}\ncertificate-authority-data: |\n  {data}"),
            "token: abc.def.ghi",
        ));
        assert_eq!(
            resolved,
            ResolvedKubeconfig {
                server: "https://10.96.0.1:443".into(),
                certificate_authority: Some(Sourced {
                    value: PemSource::Inline(b"-----BEGIN CERTIFICATE-----".to_vec()),
                    field: "clusters[c].cluster.certificate-authority-data".into(),
                }),
                insecure_skip_tls_verify: false,
                client_cert: None,
                token: Some(Sourced {
                    value: TokenSource::Inline("abc.def.ghi".into()),
                    field: "users[u].user.token".into(),
                }),
            }
        );
    }

    #[test]
    fn token_file_is_relative_to_the_kubeconfig_and_wins_over_token() {
        let resolved = resolve_ok(&config(
            &format!("{SERVER}/\ncertificate-authority: ca.crt"),
            "token: stale\ntokenFile: secrets/token",
        ));
        assert_eq!(resolved.server, "https://10.96.0.1:443");
        assert_eq!(
            resolved.certificate_authority.unwrap().value,
            PemSource::File(PathBuf::from("/etc/cni/net.d/meshlane.d/ca.crt"))
        );
        let token = resolved.token.unwrap();
        assert_eq!(
            token.value,
            TokenSource::File(PathBuf::from("/etc/cni/net.d/meshlane.d/secrets/token"))
        );
        assert_eq!(token.field, "users[u].user.tokenFile");

        let absolute = resolve_ok(&config(SERVER, "tokenFile: /var/run/secrets/token"));
        assert_eq!(
            absolute.token.unwrap().value,
            TokenSource::File(PathBuf::from("/var/run/secrets/token"))
        );
    }

    #[test]
    fn client_certificate_from_data_or_files() {
        let resolved = resolve_ok(&config(
            SERVER,
            "client-certificate-data: Y2VydA==\nclient-key-data: a2V5",
        ));
        let (cert, key) = resolved.client_cert.unwrap();
        assert_eq!(cert.value, PemSource::Inline(b"cert".to_vec()));
        assert_eq!(cert.field, "users[u].user.client-certificate-data");
        assert_eq!(key.value, PemSource::Inline(b"key".to_vec()));
        assert_eq!(resolved.token, None);

        let resolved = resolve_ok(&config(
            SERVER,
            "client-certificate: /pki/client.crt\nclient-key: client.key\ntoken: t",
        ));
        let (cert, key) = resolved.client_cert.unwrap();
        assert_eq!(cert.value, PemSource::File("/pki/client.crt".into()));
        assert_eq!(
            key.value,
            PemSource::File("/etc/cni/net.d/meshlane.d/client.key".into())
        );
        assert!(
            resolved.token.is_some(),
            "a token may accompany a certificate"
        );
    }

    #[test]
    fn insecure_skip_tls_verify_is_accepted_alone() {
        let resolved = resolve_ok(&config(
            &format!("{SERVER}\ninsecure-skip-tls-verify: true"),
            "token: t",
        ));
        assert!(resolved.insecure_skip_tls_verify);
        assert_eq!(resolved.certificate_authority, None);
    }

    #[test]
    fn json_kubeconfig_is_read_too() {
        let text = r#"{
            "kind": "Config", "apiVersion": "v1", "current-context": "ctx",
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": "https://[fd00::1]:6443/k8s/clusters/c-1",
                                                    "certificate-authority-data": "Y2E="}}],
            "users": [{"name": "u", "user": {"tokenFile": "/t"}}]
        }"#;
        let resolved = resolve_ok(text);
        assert_eq!(resolved.server, "https://[fd00::1]:6443/k8s/clusters/c-1");
        assert_eq!(
            resolved.certificate_authority.unwrap().value,
            PemSource::Inline(b"ca".to_vec())
        );
    }

    #[test]
    fn missing_current_context_is_named() {
        let text = config(SERVER, "token: t").replace("current-context: ctx\n", "");
        assert_eq!(
            field_error(&text),
            (
                "current-context".into(),
                "not set (name one of contexts)".into()
            )
        );
        let err = resolve(&text, Path::new(PATH)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("kubeconfig {PATH}: current-context: not set (name one of contexts)")
        );
    }

    #[test]
    fn broken_references_are_named() {
        let base = config(SERVER, "token: t");
        let cases = [
            (
                base.replace("current-context: ctx", "current-context: nope"),
                "current-context",
                "names context \"nope\", which is not in contexts",
            ),
            (
                base.replace("    cluster: c\n", "    cluster: gone\n"),
                "contexts[ctx].context.cluster",
                "names cluster \"gone\", which is not in clusters",
            ),
            (
                base.replace("    user: u\n", "    user: nobody\n"),
                "contexts[ctx].context.user",
                "names user \"nobody\", which is not in users",
            ),
            (
                base.replace("    user: u\n", ""),
                "contexts[ctx].context.user",
                "not set",
            ),
            (
                base.replace(
                    &format!("    {SERVER}\n"),
                    "    certificate-authority: /ca\n",
                ),
                "clusters[c].cluster.server",
                "not set",
            ),
        ];
        for (text, field, problem) in cases {
            assert_eq!(field_error(&text), (field.into(), problem.into()), "{text}");
        }
    }

    #[test]
    fn invalid_cluster_settings_are_named() {
        let cases = [
            (
                "server: http://10.96.0.1:8080".to_owned(),
                "clusters[c].cluster.server",
                "\"http://10.96.0.1:8080\": must be an https:// URL (meshlane sends credentials only over TLS)",
            ),
            (
                "server: 10.96.0.1:443".to_owned(),
                "clusters[c].cluster.server",
                "\"10.96.0.1:443\": must be an https:// URL (meshlane sends credentials only over TLS)",
            ),
            (
                "server: https://admin@10.96.0.1".to_owned(),
                "clusters[c].cluster.server",
                "\"https://admin@10.96.0.1\": must not carry user information",
            ),
            (
                "server: https://10.96.0.1/?x=1".to_owned(),
                "clusters[c].cluster.server",
                "\"https://10.96.0.1/?x=1\": must not have a query",
            ),
            (
                format!("{SERVER}\ncertificate-authority: /ca.crt\ncertificate-authority-data: Y2E="),
                "clusters[c].cluster.certificate-authority-data",
                "set together with certificate-authority; keep one",
            ),
            (
                format!("{SERVER}\ncertificate-authority-data: '%%%'"),
                "clusters[c].cluster.certificate-authority-data",
                "not base64: Invalid symbol 37, offset 0.",
            ),
            (
                format!("{SERVER}\ncertificate-authority: /ca.crt\ninsecure-skip-tls-verify: true"),
                "clusters[c].cluster.insecure-skip-tls-verify",
                "true together with clusters[c].cluster.certificate-authority; remove one",
            ),
            (
                format!("{SERVER}\ntls-server-name: kubernetes"),
                "clusters[c].cluster.tls-server-name",
                "not supported by meshlane; put a name the server's certificate holds in server",
            ),
            (
                format!("{SERVER}\nproxy-url: http://proxy:3128"),
                "clusters[c].cluster.proxy-url",
                "not supported by meshlane; the node must reach the API server directly",
            ),
        ];
        for (cluster, field, problem) in cases {
            let text = config(&cluster, "token: t");
            assert_eq!(
                field_error(&text),
                (field.into(), problem.into()),
                "{cluster}"
            );
        }
    }

    #[test]
    fn invalid_user_settings_are_named() {
        let unsupported = "not supported by meshlane; use token, tokenFile or a client certificate";
        let cases = [
            ("exec:\n  command: aws\n  args: [eks, get-token]", "users[u].user.exec", unsupported),
            ("auth-provider:\n  name: gcp", "users[u].user.auth-provider", unsupported),
            ("username: admin\npassword: secret", "users[u].user.username", unsupported),
            ("token: t\nas: system:admin", "users[u].user.as", unsupported),
            ("token: '  '", "users[u].user.token", "empty"),
            (
                "client-certificate: /c.crt",
                "users[u].user.client-key",
                "missing: client-certificate needs client-key or client-key-data",
            ),
            (
                "client-key-data: a2V5",
                "users[u].user.client-certificate",
                "missing: client-key needs client-certificate or client-certificate-data",
            ),
            (
                "client-key-data: a2V5\nclient-key: /k\nclient-certificate: /c",
                "users[u].user.client-key-data",
                "set together with client-key; keep one",
            ),
            (
                "{}",
                "users[u].user",
                "no credentials: set token, tokenFile, or client-certificate(-data) with client-key(-data)",
            ),
        ];
        for (user, field, problem) in cases {
            let text = config(SERVER, user);
            assert_eq!(field_error(&text), (field.into(), problem.into()), "{user}");
        }
    }

    #[test]
    fn an_entry_without_its_body_reads_as_empty() {
        let text =
            config(SERVER, "token: t").replace("- name: u\n  user:\n    token: t\n", "- name: u\n");
        assert_eq!(
            field_error(&text).0,
            "users[u].user",
            "the user exists but has no credentials"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        for text in [
            "clusters: [unclosed",
            "current-context: [1, 2]",
            "- just\n- a list",
        ] {
            match resolve(text, Path::new(PATH)) {
                Err(KubeError::KubeconfigSyntax { path, detail }) => {
                    assert_eq!(path, Path::new(PATH));
                    assert!(detail.contains("line 1"), "{detail}");
                    assert!(!detail.contains('\n'), "{detail}");
                }
                other => panic!("{text}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_do_not_quote_the_source() {
        let text = config(SERVER, "token: s3cr3t-token\n  bad: [");
        let err = resolve(&text, Path::new(PATH)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("kubeconfig {PATH} is not valid YAML")),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let resolved = resolve_ok(&config(SERVER, "token: s3cr3t-token"));
        let debug = format!("{resolved:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
