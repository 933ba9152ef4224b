//! Whether the node-wide short path is on: the `shortPath` switch, and when it is
//! not set, the kernel. The short path relies on sockmap behaviour that has
//! changed, and broken, between kernel releases; it is on by default only on the
//! kernel series (major.minor) where it was proven: the short-path test suite
//! passed 20 runs in a row, every payload byte-exact, no transfer stalling over
//! 2 s. The evidence (kernel packages, runs, dates) is in docs/kernels.md; a
//! series joins this table only with its evidence there.

use std::fmt;

/// Series the short path is proven on (docs/kernels.md, "The short path default").
/// None: 6.18 passed the suite 20 runs in a row twice, then lost an RST once in a
/// clean-clone CI run, the kernel limit every series of the matrix shares
/// (docs/kernels.md, "The RST a locked receiver lost"). A series joins again when
/// the short path keeps that RST, with its 20 runs.
pub const PROVEN_SERIES: &[(u32, u32)] = &[];

/// The node-wide `shortPath` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortPathSwitch {
    /// Not set: on where the kernel series is proven.
    #[default]
    ByKernel,
    /// `true`: on, whatever the kernel.
    On,
    /// `false`: off.
    Off,
}

impl ShortPathSwitch {
    /// `None` (the key is absent) → by kernel.
    pub fn from_setting(value: Option<bool>) -> Self {
        match value {
            None => ShortPathSwitch::ByKernel,
            Some(true) => ShortPathSwitch::On,
            Some(false) => ShortPathSwitch::Off,
        }
    }
}

/// Why the node-wide short path is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `shortPath: true`.
    Forced,
    /// `shortPath: false`.
    SwitchedOff,
    /// Not set, and the kernel's series is proven.
    Proven((u32, u32)),
    /// Not set, and the kernel's series is not proven (`None`: unreadable release).
    NotProven(Option<(u32, u32)>),
}

/// The node-wide decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShortPath {
    pub on: bool,
    pub reason: Reason,
}

/// `6.18.44-fc-v595` → (6, 18).
pub fn kernel_series(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn node_short_path(switch: ShortPathSwitch, kernel_release: &str) -> NodeShortPath {
    decide(switch, kernel_release, PROVEN_SERIES)
}

/// The decision against a table of proven series (a parameter, so that the unit
/// tests cover a proven series while the table is empty).
fn decide(switch: ShortPathSwitch, kernel_release: &str, proven: &[(u32, u32)]) -> NodeShortPath {
    let (on, reason) = match switch {
        ShortPathSwitch::On => (true, Reason::Forced),
        ShortPathSwitch::Off => (false, Reason::SwitchedOff),
        ShortPathSwitch::ByKernel => match kernel_series(kernel_release) {
            Some(series) if proven.contains(&series) => (true, Reason::Proven(series)),
            series => (false, Reason::NotProven(series)),
        },
    };
    NodeShortPath { on, reason }
}

fn proven_list() -> String {
    if PROVEN_SERIES.is_empty() {
        return "none yet".to_owned();
    }
    PROVEN_SERIES
        .iter()
        .map(|(major, minor)| format!("{major}.{minor}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => f.write_str("shortPath: true"),
            Reason::SwitchedOff => f.write_str("shortPath: false"),
            Reason::Proven((major, minor)) => write!(
                f,
                "kernel series {major}.{minor} is proven for it (docs/kernels.md)"
            ),
            Reason::NotProven(series) => {
                let series = series.map_or("of this kernel".to_owned(), |(major, minor)| {
                    format!("{major}.{minor}")
                });
                write!(
                    f,
                    "kernel series {series} is not among those the short path is proven on ({}; \
                     docs/kernels.md); shortPath: true turns it on",
                    proven_list()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_give_their_series() {
        assert_eq!(kernel_series("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(kernel_series("6.1.0-57-cloud-amd64\n"), Some((6, 1)));
        assert_eq!(kernel_series("6.12.118+deb12-cloud-amd64"), Some((6, 12)));
        assert_eq!(kernel_series("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_series("5.15.0-91-generic\n"), Some((5, 15)));
        assert_eq!(kernel_series("garbage"), None);
        assert_eq!(kernel_series(""), None);
    }

    #[test]
    fn unset_follows_the_proven_series_and_the_switch_wins() {
        use ShortPathSwitch::*;
        let proven = [(6, 18)];
        let table = [
            (ByKernel, "6.18.44-fc-v595", true, Reason::Proven((6, 18))),
            (
                ByKernel,
                "5.15.0-91-generic",
                false,
                Reason::NotProven(Some((5, 15))),
            ),
            (ByKernel, "6.6.30", false, Reason::NotProven(Some((6, 6)))),
            (ByKernel, "", false, Reason::NotProven(None)),
            (On, "5.15.0-91-generic", true, Reason::Forced),
            (On, "6.18.44", true, Reason::Forced),
            (Off, "6.18.44", false, Reason::SwitchedOff),
            (Off, "5.15.0", false, Reason::SwitchedOff),
        ];
        for (switch, release, on, reason) in table {
            assert_eq!(
                decide(switch, release, &proven),
                NodeShortPath { on, reason },
                "{switch:?} on {release:?}"
            );
        }
    }

    #[test]
    fn no_series_is_proven_while_the_rst_can_be_lost() {
        let decision = node_short_path(ShortPathSwitch::ByKernel, "6.18.44-fc-v1252");
        assert!(!decision.on);
        assert!(
            decision
                .reason
                .to_string()
                .contains("(none yet; docs/kernels.md)"),
            "{}",
            decision.reason
        );
        assert!(node_short_path(ShortPathSwitch::On, "6.18.44-fc-v1252").on);
    }

    #[test]
    fn the_setting_maps_to_the_switch() {
        assert_eq!(
            ShortPathSwitch::from_setting(None),
            ShortPathSwitch::ByKernel
        );
        assert_eq!(
            ShortPathSwitch::from_setting(Some(true)),
            ShortPathSwitch::On
        );
        assert_eq!(
            ShortPathSwitch::from_setting(Some(false)),
            ShortPathSwitch::Off
        );
    }

    #[test]
    fn an_unproven_series_says_how_to_force_it() {
        let text = Reason::NotProven(Some((5, 15))).to_string();
        assert!(text.contains("5.15"), "{text}");
        assert!(text.contains("shortPath: true"), "{text}");
        assert!(text.contains("docs/kernels.md"), "{text}");
    }
}
