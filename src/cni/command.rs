//! `CNI_COMMAND` and the other `CNI_*` environment variables, validated the way
//! the spec and the reference skeleton do. Pure: the caller hands in the variables.

use std::collections::HashMap;
use std::path::PathBuf;

use super::error::CniError;
use super::AttachmentId;

pub const CNI_COMMAND: &str = "CNI_COMMAND";
pub const CNI_CONTAINERID: &str = "CNI_CONTAINERID";
pub const CNI_NETNS: &str = "CNI_NETNS";
pub const CNI_IFNAME: &str = "CNI_IFNAME";
pub const CNI_ARGS: &str = "CNI_ARGS";
pub const CNI_PATH: &str = "CNI_PATH";

/// Linux `IFNAMSIZ` minus the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// The operation the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
        Command::Version,
    ];

    /// The `CNI_COMMAND` spelling (case-sensitive, as in the spec).
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Code 4 naming `CNI_COMMAND` and the value when it is not a CNI command.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        Self::ALL
            .into_iter()
            .find(|command| command.as_str() == text)
            .ok_or_else(|| CniError::invalid_env(CNI_COMMAND, format!("unknown command {text:?}")))
    }

    /// Whether the command names one attachment (container ID + interface).
    pub const fn is_attachment_command(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    /// The variables this command cannot run without, in the order they are
    /// reported. `CNI_NETNS` is optional for DEL (the netns may be gone); STATUS
    /// takes `CNI_PATH` optionally (spec 1.1), GC requires it.
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH],
            Command::Del => &[CNI_CONTAINERID, CNI_IFNAME, CNI_PATH],
            Command::Gc => &[CNI_PATH],
            Command::Status | Command::Version => &[],
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Command {
    type Err = CniError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The validated `CNI_*` variables of one invocation. A variable the command
/// does not use is left unset even when the runtime passed it, so nothing
/// unvalidated reaches the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub command: Command,
    /// `CNI_CONTAINERID`; set for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS`; set for ADD and CHECK, and for DEL when the runtime passed it.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`; set for ADD, DEL and CHECK.
    pub ifname: Option<String>,
    /// `CNI_ARGS` split into pairs, in order; empty when absent or unused.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH` split on `:` (empty entries dropped); empty for VERSION.
    pub path: Vec<PathBuf>,
}

impl Environment {
    /// Reads and validates the variables. An empty value counts as missing (as in
    /// the reference skeleton). Checks run in this order: `CNI_COMMAND`, then all
    /// missing variables (reported together), then each value. Every failure is
    /// code 4 and names the variable.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, CniError> {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(key, value)| key.starts_with("CNI_") && !value.is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(String::as_str);

        let command = Command::parse(
            get(CNI_COMMAND).ok_or_else(|| CniError::invalid_env(CNI_COMMAND, "is missing"))?,
        )?;

        let missing: Vec<&str> = command
            .required()
            .iter()
            .copied()
            .filter(|name| get(name).is_none())
            .collect();
        match missing.as_slice() {
            [] => {}
            [name] => {
                return Err(CniError::invalid_env(
                    name,
                    format!("is missing (required for {command})"),
                ))
            }
            names => {
                return Err(CniError::invalid_env(
                    &names.join(", "),
                    format!("are missing (required for {command})"),
                ))
            }
        }

        let mut env = Environment {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: Vec::new(),
            path: Vec::new(),
        };
        if command.is_attachment_command() {
            env.container_id = get(CNI_CONTAINERID)
                .map(validate_container_id)
                .transpose()?;
            env.netns = get(CNI_NETNS).map(PathBuf::from);
            env.ifname = get(CNI_IFNAME).map(validate_ifname).transpose()?;
            env.args = get(CNI_ARGS)
                .map(parse_args)
                .transpose()?
                .unwrap_or_default();
        }
        if command != Command::Version {
            env.path = get(CNI_PATH).map(split_path).unwrap_or_default();
        }
        Ok(env)
    }

    /// The attachment an ADD, DEL or CHECK is about; `None` for the other commands.
    pub fn attachment(&self) -> Option<AttachmentId> {
        Some(AttachmentId {
            container_id: self.container_id.clone()?,
            ifname: self.ifname.clone()?,
        })
    }
}

/// Non-empty, an ASCII letter or digit first, then letters, digits, `_`, `.`, `-`.
/// The spec uses the same rule for container IDs and network names.
pub(crate) fn is_cni_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_container_id(value: &str) -> Result<String, CniError> {
    if is_cni_identifier(value) {
        Ok(value.to_owned())
    } else {
        Err(CniError::invalid_env(
            CNI_CONTAINERID,
            format!(
                "{value:?} is not a valid container ID (it must start with a letter or digit, \
                 followed by letters, digits, '_', '.' or '-')"
            ),
        ))
    }
}

/// The kernel's `dev_valid_name` rules: what `ip link` would refuse, we refuse
/// before touching anything.
fn validate_ifname(value: &str) -> Result<String, CniError> {
    let refuse = |problem: String| Err(CniError::invalid_env(CNI_IFNAME, problem));
    if value.len() > MAX_IFNAME_LEN {
        return refuse(format!(
            "{value:?} is too long ({} bytes; an interface name has at most {MAX_IFNAME_LEN})",
            value.len()
        ));
    }
    if value == "." || value == ".." {
        return refuse(format!("{value:?} is not a valid interface name"));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace())
    {
        return refuse(format!(
            "{value:?} contains {bad:?} (an interface name must not contain '/', ':' or whitespace)"
        ));
    }
    Ok(value.to_owned())
}

/// `K=V;K2=V2`. Like the reference, every pair needs exactly one `=` and a key;
/// an empty pair (`A=1;;B=2`, a trailing `;`) is malformed.
fn parse_args(value: &str) -> Result<Vec<(String, String)>, CniError> {
    value
        .split(';')
        .map(|pair| match pair.split_once('=') {
            Some((key, val)) if !key.is_empty() && !val.contains('=') => {
                Ok((key.to_owned(), val.to_owned()))
            }
            _ => Err(CniError::invalid_env(
                CNI_ARGS,
                format!("{pair:?} is not a KEY=VALUE pair"),
            )),
        })
        .collect()
}

fn split_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::ErrorCode;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A complete, valid environment for `command`.
    fn full(command: &str) -> Vec<(String, String)> {
        vars(&[
            (CNI_COMMAND, command),
            (CNI_CONTAINERID, "0f1e2d3c4b5a"),
            (CNI_NETNS, "/var/run/netns/cni-1234"),
            (CNI_IFNAME, "eth0"),
            (
                CNI_ARGS,
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
            (CNI_PATH, "/opt/cni/bin::/usr/lib/cni"),
        ])
    }

    fn with(
        mut base: Vec<(String, String)>,
        name: &str,
        value: Option<&str>,
    ) -> Vec<(String, String)> {
        base.retain(|(k, _)| k != name);
        if let Some(value) = value {
            base.push((name.to_owned(), value.to_owned()));
        }
        base
    }

    /// `full(command)` with `name` set to `value` (or unset), which must be accepted.
    fn env_with(command: &str, name: &str, value: Option<&str>) -> Environment {
        Environment::from_vars(with(full(command), name, value))
            .unwrap_or_else(|err| panic!("{name}={value:?}: {err:?}"))
    }

    fn env_error(vars: Vec<(String, String)>) -> CniError {
        let err = Environment::from_vars(vars).expect_err("must be refused");
        assert_eq!(err.code, ErrorCode::InvalidEnvironment, "{err:?}");
        err
    }

    #[test]
    fn parses_every_command_and_rejects_others() {
        for command in Command::ALL {
            assert_eq!(Command::parse(command.as_str()), Ok(command));
            assert_eq!(command.to_string().parse::<Command>(), Ok(command));
        }
        for bad in [
            "add",
            "Add",
            "GET",
            "DELETE",
            " ADD",
            "ADD ",
            "VERSION\n",
            "x",
        ] {
            let err = Command::parse(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidEnvironment);
            assert_eq!(err.msg, format!("CNI_COMMAND: unknown command {bad:?}"));
        }
    }

    #[test]
    fn full_add_environment() {
        let env = Environment::from_vars(full("ADD")).expect("valid");
        assert_eq!(
            env,
            Environment {
                command: Command::Add,
                container_id: Some("0f1e2d3c4b5a".into()),
                netns: Some("/var/run/netns/cni-1234".into()),
                ifname: Some("eth0".into()),
                args: vec![
                    ("IgnoreUnknown".into(), "1".into()),
                    ("K8S_POD_NAMESPACE".into(), "default".into()),
                    ("K8S_POD_NAME".into(), "web-0".into()),
                ],
                path: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            }
        );
        assert_eq!(
            env.attachment(),
            Some(AttachmentId {
                container_id: "0f1e2d3c4b5a".into(),
                ifname: "eth0".into()
            })
        );
    }

    #[test]
    fn command_missing_or_empty() {
        for base in [
            vars(&[]),
            with(full("ADD"), CNI_COMMAND, None),
            with(full("ADD"), CNI_COMMAND, Some("")),
        ] {
            assert_eq!(env_error(base).msg, "CNI_COMMAND: is missing");
        }
    }

    #[test]
    fn unknown_command_is_reported_before_other_variables() {
        let err = env_error(vars(&[(CNI_COMMAND, "GET")]));
        assert_eq!(err.msg, "CNI_COMMAND: unknown command \"GET\"");
    }

    #[test]
    fn each_required_variable_per_command() {
        // (command, variable, required?)
        let table = [
            ("ADD", CNI_CONTAINERID, true),
            ("ADD", CNI_NETNS, true),
            ("ADD", CNI_IFNAME, true),
            ("ADD", CNI_PATH, true),
            ("ADD", CNI_ARGS, false),
            ("CHECK", CNI_CONTAINERID, true),
            ("CHECK", CNI_NETNS, true),
            ("CHECK", CNI_IFNAME, true),
            ("CHECK", CNI_PATH, true),
            ("CHECK", CNI_ARGS, false),
            ("DEL", CNI_CONTAINERID, true),
            ("DEL", CNI_NETNS, false),
            ("DEL", CNI_IFNAME, true),
            ("DEL", CNI_PATH, true),
            ("DEL", CNI_ARGS, false),
            ("GC", CNI_CONTAINERID, false),
            ("GC", CNI_NETNS, false),
            ("GC", CNI_IFNAME, false),
            ("GC", CNI_PATH, true),
            ("GC", CNI_ARGS, false),
            ("STATUS", CNI_CONTAINERID, false),
            ("STATUS", CNI_NETNS, false),
            ("STATUS", CNI_IFNAME, false),
            ("STATUS", CNI_PATH, false),
            ("STATUS", CNI_ARGS, false),
            ("VERSION", CNI_CONTAINERID, false),
            ("VERSION", CNI_NETNS, false),
            ("VERSION", CNI_IFNAME, false),
            ("VERSION", CNI_PATH, false),
            ("VERSION", CNI_ARGS, false),
        ];
        for (command, name, required) in table {
            for absent in [None, Some("")] {
                let result = Environment::from_vars(with(full(command), name, absent));
                if required {
                    let err = result.expect_err(&format!("{command} without {name}"));
                    assert_eq!(err.code, ErrorCode::InvalidEnvironment);
                    assert_eq!(
                        err.msg,
                        format!("{name}: is missing (required for {command})")
                    );
                } else {
                    assert!(result.is_ok(), "{command} without {name}: {result:?}");
                }
            }
        }
    }

    #[test]
    fn all_missing_variables_are_named_together() {
        let err = env_error(vars(&[(CNI_COMMAND, "ADD")]));
        assert_eq!(
            err.msg,
            "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH: are missing (required for ADD)"
        );
        let err = env_error(vars(&[(CNI_COMMAND, "DEL"), (CNI_PATH, "/opt/cni/bin")]));
        assert_eq!(
            err.msg,
            "CNI_CONTAINERID, CNI_IFNAME: are missing (required for DEL)"
        );
    }

    #[test]
    fn missing_is_reported_before_invalid() {
        let base = with(full("ADD"), CNI_IFNAME, Some("bad:name"));
        let err = env_error(with(base, CNI_PATH, None));
        assert_eq!(err.msg, "CNI_PATH: is missing (required for ADD)");
    }

    #[test]
    fn container_ids() {
        let valid = [
            "a",
            "0",
            "Z",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "k8s_POD_web-0_default_1234-abcd_0",
            "a.b-c_d",
            "dummy",
        ];
        for id in valid {
            let env = env_with("ADD", CNI_CONTAINERID, Some(id));
            assert_eq!(env.container_id.as_deref(), Some(id));
        }
        let invalid = [
            "-a", "_a", ".a", "a b", "a/b", "a:b", "a\tb", "é", "aé", "a+b", "a@b", " a",
        ];
        for id in invalid {
            let err = env_error(with(full("DEL"), CNI_CONTAINERID, Some(id)));
            assert!(err.msg.starts_with("CNI_CONTAINERID: "), "{}", err.msg);
            assert!(err.msg.contains(&format!("{id:?}")), "{}", err.msg);
        }
    }

    #[test]
    fn interface_names() {
        let valid = [
            "eth0",
            "e",
            "net1",
            "123456789012345",
            "veth-ab_c.d",
            "é",
            "eth0@x",
        ];
        for name in valid {
            let env = env_with("CHECK", CNI_IFNAME, Some(name));
            assert_eq!(env.ifname.as_deref(), Some(name));
        }
        // (value, expected fragment of the message)
        let invalid = [
            ("1234567890123456", "is too long (16 bytes"),
            ("ééééééééé", "is too long (18 bytes"),
            (".", "is not a valid interface name"),
            ("..", "is not a valid interface name"),
            ("eth/0", "contains '/'"),
            ("eth:0", "contains ':'"),
            ("eth 0", "contains ' '"),
            ("eth\t0", "contains '\\t'"),
            ("eth0\n", "contains '\\n'"),
            ("eth\u{a0}0", "contains '\\u{a0}'"),
        ];
        for (name, fragment) in invalid {
            for command in ["ADD", "DEL", "CHECK"] {
                let err = env_error(with(full(command), CNI_IFNAME, Some(name)));
                assert!(err.msg.starts_with("CNI_IFNAME: "), "{}", err.msg);
                assert!(err.msg.contains(fragment), "{name:?}: {}", err.msg);
            }
        }
    }

    #[test]
    fn cni_args() {
        let table: [(&str, &[(&str, &str)]); 5] = [
            ("A=1", &[("A", "1")]),
            ("A=", &[("A", "")]),
            ("A=1;B=2", &[("A", "1"), ("B", "2")]),
            ("A=1;A=2", &[("A", "1"), ("A", "2")]),
            (
                "IgnoreUnknown=true;K8S_POD_UID=6b1c-4e",
                &[("IgnoreUnknown", "true"), ("K8S_POD_UID", "6b1c-4e")],
            ),
        ];
        for (value, expected) in table {
            let env = env_with("ADD", CNI_ARGS, Some(value));
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(env.args, expected, "{value}");
        }
        let malformed = [
            ("A", "\"A\""),
            ("=1", "\"=1\""),
            ("A=1=2", "\"A=1=2\""),
            ("A=1;", "\"\""),
            ("A=1;;B=2", "\"\""),
            (";A=1", "\"\""),
            ("A=1;B", "\"B\""),
        ];
        for (value, pair) in malformed {
            let err = env_error(with(full("DEL"), CNI_ARGS, Some(value)));
            assert_eq!(
                err.msg,
                format!("CNI_ARGS: {pair} is not a KEY=VALUE pair"),
                "{value}"
            );
        }
        let env = env_with("ADD", CNI_ARGS, None);
        assert!(env.args.is_empty());
    }

    #[test]
    fn unused_variables_are_neither_validated_nor_kept() {
        let junk = [
            (CNI_CONTAINERID, "-bad"),
            (CNI_IFNAME, "way/too/long/for/an/interface"),
            (CNI_ARGS, "not a pair"),
            (CNI_NETNS, "/proc/1/ns/net"),
        ];
        for command in ["GC", "STATUS", "VERSION"] {
            let mut all = vars(&junk);
            all.extend(vars(&[(CNI_COMMAND, command), (CNI_PATH, "/opt/cni/bin")]));
            let env = Environment::from_vars(all).expect(command);
            assert_eq!(env.container_id, None);
            assert_eq!(env.netns, None);
            assert_eq!(env.ifname, None);
            assert!(env.args.is_empty());
            assert_eq!(env.attachment(), None);
            if command == "VERSION" {
                assert!(env.path.is_empty());
            } else {
                assert_eq!(env.path, vec![PathBuf::from("/opt/cni/bin")]);
            }
        }
    }

    #[test]
    fn del_keeps_netns_when_given_and_works_without() {
        let env = Environment::from_vars(full("DEL")).expect("with netns");
        assert_eq!(env.netns, Some(PathBuf::from("/var/run/netns/cni-1234")));
        let env = env_with("DEL", CNI_NETNS, None);
        assert_eq!(env.netns, None);
        assert!(env.attachment().is_some());
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let mut all = full("ADD");
        all.extend(vars(&[
            ("PATH", "/usr/bin"),
            ("HOME", ""),
            ("CNI_NETNS_OVERRIDE", "1"),
        ]));
        assert!(Environment::from_vars(all).is_ok());
    }

    #[test]
    fn identifier_rule() {
        assert!(is_cni_identifier("k8s-pod-network"));
        assert!(is_cni_identifier("cbr0"));
        assert!(!is_cni_identifier(""));
        assert!(!is_cni_identifier("net/1"));
        assert!(!is_cni_identifier("-net"));
    }
}
