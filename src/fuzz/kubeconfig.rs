//! The plugin's kubeconfig (YAML, or JSON).

use std::path::Path;

use proptest::prelude::*;

use super::json;
use crate::kube::error::KubeError;
use crate::kube::kubeconfig::resolve;

const PATH: &str = "/etc/cni/net.d/meshlane.d/kubeconfig";

fn kubeconfig(server: &str, token: &str, names: (&str, &str, &str)) -> String {
    let (context, cluster, user) = names;
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {context}\n\
         contexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    user: {user}\n\
         clusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: {user}\n  user:\n    token: \"{token}\"\n"
    )
}

/// Whether an error is one a kubeconfig can give by its text alone, with the file named.
fn names_the_file(err: &KubeError) -> bool {
    match err {
        KubeError::KubeconfigSyntax { path, .. } | KubeError::KubeconfigField { path, .. } => {
            path == Path::new(PATH)
        }
        // Text that names a file (certificate-authority: /x) which does not exist.
        KubeError::ReferencedFile { kubeconfig, .. } => kubeconfig == Path::new(PATH),
        _ => false,
    }
}

proptest! {
    #![proptest_config(super::config(2000))]

    #[test]
    fn any_text_resolves_or_fails_naming_the_file(text in any::<String>()) {
        if let Err(err) = resolve(&text, Path::new(PATH)) {
            prop_assert!(names_the_file(&err), "{err:?}");
        }
    }

    #[test]
    fn any_json_document_resolves_or_fails_naming_the_file(doc in json::value()) {
        let text = serde_json::to_string(&doc).unwrap();
        if let Err(err) = resolve(&text, Path::new(PATH)) {
            prop_assert!(names_the_file(&err), "{err:?}");
        }
    }

    /// A valid kubeconfig with one line cut or changed: never a panic, and a
    /// field error names a field the file has.
    #[test]
    fn a_damaged_kubeconfig_fails_naming_the_file(
        drop_line in 0usize..16,
        garbage in json::text(),
    ) {
        let text = kubeconfig("https://10.96.0.1:443", "abc", ("ctx", "c", "u"));
        let damaged: String = text
            .lines()
            .enumerate()
            .map(|(i, line)| if i == drop_line { format!("{garbage}\n") } else { format!("{line}\n") })
            .collect();
        if let Err(err) = resolve(&damaged, Path::new(PATH)) {
            prop_assert!(names_the_file(&err), "{err:?}");
        }
    }

    #[test]
    fn valid_kubeconfigs_round_trip(
        host in "[a-z][a-z0-9-]{0,20}",
        port in 1u16..,
        token in "[A-Za-z0-9._-]{1,40}",
        context in "[a-z][a-z0-9-]{0,10}",
        cluster in "[a-z][a-z0-9-]{0,10}",
        user in "[a-z][a-z0-9-]{0,10}",
    ) {
        let server = format!("https://{host}:{port}");
        let text = kubeconfig(&server, &token, (&context, &cluster, &user));
        let resolved = resolve(&text, Path::new(PATH)).unwrap_or_else(|err| panic!("{text}\n{err}"));
        prop_assert_eq!(resolved.server, server);
        prop_assert!(resolved.insecure_skip_tls_verify);
        prop_assert!(resolved.token.is_some());
    }
}
