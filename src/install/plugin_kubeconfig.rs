//! The kubeconfig the plugin reads pods with (the chain entry's `kubeconfig`).
//!
//! The plugin runs on the host, outside any pod, so it has no service account of
//! its own: the agent lends it its own. It copies its projected token to a host
//! file next to the kubeconfig and names that copy in `tokenFile`, which the
//! plugin re-reads at every request; the CA goes inline. Projected tokens
//! rotate (the kubelet renews them before they expire), so the copy is
//! refreshed whenever the original changes. Both files are written atomically
//! (a reader never sees half a token) and are readable by root only.

use std::fs;
use std::path::Path;

use base64::Engine as _;

use super::error::InstallError;
use super::files::write_atomic;
use super::settings::KubeconfigFiles;

/// Root only: the token is the agent's credential.
const MODE: u32 = 0o600;

/// What a refresh changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub token: bool,
    pub kubeconfig: bool,
}

/// Brings the token copy and the kubeconfig up to date with the service
/// account in `account_dir` (`token`, `ca.crt`); writes only what changed.
pub fn refresh(
    files: &KubeconfigFiles,
    server: &str,
    account_dir: &Path,
) -> Result<Refreshed, InstallError> {
    let read = |name: &str| {
        let path = account_dir.join(name);
        fs::read(&path).map_err(InstallError::io("reading", path))
    };
    let token = read("token")?;
    if token.iter().all(u8::is_ascii_whitespace) {
        return Err(InstallError::io("reading", account_dir.join("token"))(
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the token is empty"),
        ));
    }
    let ca = read("ca.crt")?;
    if let Some(dir) = files.write_path.parent() {
        fs::create_dir_all(dir).map_err(InstallError::io("creating", dir))?;
    }
    // The token first: the kubeconfig must never name a file that is not there.
    let token_path = files.token_write_path();
    let token_changed = fs::read(&token_path).ok().as_deref() != Some(token.as_slice());
    if token_changed {
        write_atomic(&token_path, &token, MODE)?;
    }
    let text = render(server, &ca, &files.token_host_path());
    let kubeconfig_changed = fs::read(&files.write_path).ok().as_deref() != Some(text.as_bytes());
    if kubeconfig_changed {
        write_atomic(&files.write_path, text.as_bytes(), MODE)?;
    }
    Ok(Refreshed {
        token: token_changed,
        kubeconfig: kubeconfig_changed,
    })
}

/// The kubeconfig text. Values are written as JSON strings, which YAML reads
/// as double-quoted scalars: no path or URL can break the document.
pub fn render(server: &str, ca_pem: &[u8], token_file: &Path) -> String {
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "# Written by meshlane's node agent for the meshlane CNI plugin; rewritten\n\
         # when the cluster CA changes. The token file is the agent's service account\n\
         # token, copied again when it rotates.\n\
         apiVersion: v1\n\
         kind: Config\n\
         current-context: meshlane\n\
         contexts:\n\
         - name: meshlane\n\
        \x20 context:\n\
        \x20   cluster: local\n\
        \x20   user: meshlane\n\
         clusters:\n\
         - name: local\n\
        \x20 cluster:\n\
        \x20   server: {}\n\
        \x20   certificate-authority-data: {}\n\
         users:\n\
         - name: meshlane\n\
        \x20 user:\n\
        \x20   tokenFile: {}\n",
        quoted(server),
        quoted(&ca),
        quoted(&token_file.to_string_lossy())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    #[test]
    fn the_text_is_a_kubeconfig_meshlane_reads() {
        let dir = scratch("render");
        let ca = rcgen::generate_simple_self_signed(vec!["api".to_owned()])
            .unwrap()
            .cert
            .pem();
        let token = dir.join("odd: name #1.token");
        fs::write(&token, "t0k3n\n").unwrap();
        let path = dir.join("kubeconfig");
        fs::write(
            &path,
            render("https://[fd00::1]:443", ca.as_bytes(), &token),
        )
        .unwrap();
        let access = crate::kube::KubeAccess::from_kubeconfig(&path).unwrap();
        assert_eq!(access.server(), "https://[fd00::1]:443");
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("t0k3n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refresh_writes_what_changed_root_only() {
        let dir = scratch("refresh");
        let account = dir.join("account");
        fs::create_dir_all(&account).unwrap();
        fs::write(account.join("token"), "one").unwrap();
        fs::write(account.join("ca.crt"), "not checked here").unwrap();
        let files = KubeconfigFiles {
            host_path: PathBuf::from("/etc/cni/net.d/meshlane-kubeconfig"),
            write_path: dir.join("net.d/meshlane-kubeconfig"),
        };
        let both = Refreshed {
            token: true,
            kubeconfig: true,
        };
        assert_eq!(refresh(&files, "https://api:6443", &account).unwrap(), both);
        for path in [&files.write_path, &files.token_write_path()] {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let text = fs::read_to_string(&files.write_path).unwrap();
        assert!(
            text.contains("tokenFile: \"/etc/cni/net.d/meshlane-kubeconfig.token\""),
            "the host path is named:\n{text}"
        );
        assert_eq!(
            refresh(&files, "https://api:6443", &account).unwrap(),
            Refreshed::default(),
            "nothing changed, nothing written"
        );
        fs::write(account.join("token"), "two").unwrap();
        assert_eq!(
            refresh(&files, "https://api:6443", &account).unwrap(),
            Refreshed {
                token: true,
                kubeconfig: false
            }
        );
        assert_eq!(fs::read(files.token_write_path()).unwrap(), b"two");

        fs::write(account.join("token"), " \n").unwrap();
        assert!(refresh(&files, "https://api:6443", &account).is_err());
        assert_eq!(
            fs::read(files.token_write_path()).unwrap(),
            b"two",
            "an empty token never replaces a good one"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
