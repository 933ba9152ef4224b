//! What an upgrade of the node's programs found and did, hook by hook.

use std::fmt;

use super::prog_identity::tag_hex;

/// Where a program runs, named as its pin under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `links/<name>`: a cgroup link, or the `sk_msg` link on its map.
    Link(&'static str),
    /// The `sk_msg` program attached to its map itself (kernels before 6.10),
    /// marked by the program pinned at `progs/<pin>`.
    MapAttached {
        pin: &'static str,
        map: &'static str,
    },
    /// `progs/<name>`: the program new pods' links are made from.
    PodProgramPin(&'static str),
    /// `inbound/<netns cookie>`: one pod's inbound steering link.
    PodLink(u64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Link(name) => write!(f, "links/{name}"),
            Target::MapAttached { pin, map } => write!(f, "map {map} (progs/{pin})"),
            Target::PodProgramPin(name) => write!(f, "progs/{name}"),
            Target::PodLink(cookie) => write!(f, "inbound/{cookie}"),
        }
    }
}

/// What became of one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It runs this build's program (or, forced or not, was left as it was).
    Current,
    /// It was switched from the old program to the new one.
    Replaced,
    /// A pod's link whose network namespace is gone (the pod went without a
    /// DEL): it steers nothing and cannot be switched; GC removes it.
    NetnsGone,
}

/// One hook: the program it ran, and the one it runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramUpgrade {
    pub target: Target,
    /// The program's function name (`ml_connect4`).
    pub program: &'static str,
    /// The link's id, for links: it stays the same across a replacement.
    pub link_id: Option<u32>,
    pub old_id: u32,
    pub old_tag: [u8; 8],
    /// Equal to the old ones unless it was replaced.
    pub new_id: u32,
    pub new_tag: [u8; 8],
    pub outcome: Outcome,
}

impl fmt::Display for ProgramUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old_tag, new_tag) = (tag_hex(&self.old_tag), tag_hex(&self.new_tag));
        let (target, program) = (self.target.to_string(), self.program);
        match self.outcome {
            Outcome::Current => {
                return write!(
                    f,
                    "{target:<18} {program:<16} current   prog id {} tag {old_tag}",
                    self.old_id
                )
            }
            Outcome::NetnsGone => {
                return write!(
                    f,
                    "{target:<18} {program:<16} netns gone (left to GC), prog id {}",
                    self.old_id
                )
            }
            Outcome::Replaced => {}
        }
        let tag = if old_tag == new_tag {
            format!("tag {old_tag} (same code)")
        } else {
            format!("tag {old_tag} -> {new_tag}")
        };
        write!(
            f,
            "{target:<18} {program:<16} replaced  prog id {} -> {}, {tag}",
            self.old_id, self.new_id
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// Every hook meshlane has on the node, in the order they were handled.
    pub programs: Vec<ProgramUpgrade>,
}

impl UpgradeReport {
    pub fn replaced(&self) -> impl Iterator<Item = &ProgramUpgrade> {
        self.with(Outcome::Replaced)
    }

    pub fn current(&self) -> impl Iterator<Item = &ProgramUpgrade> {
        self.with(Outcome::Current)
    }

    pub fn with(&self, outcome: Outcome) -> impl Iterator<Item = &ProgramUpgrade> {
        self.programs.iter().filter(move |p| p.outcome == outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: Outcome) -> ProgramUpgrade {
        ProgramUpgrade {
            target: Target::Link("connect4"),
            program: "ml_connect4",
            link_id: Some(7),
            old_id: 40,
            old_tag: [0xab; 8],
            new_id: if outcome == Outcome::Replaced { 52 } else { 40 },
            new_tag: [0xcd; 8],
            outcome,
        }
    }

    #[test]
    fn targets_are_named_as_their_pins() {
        assert_eq!(Target::Link("sk_msg").to_string(), "links/sk_msg");
        assert_eq!(Target::PodLink(4099).to_string(), "inbound/4099");
        assert_eq!(
            Target::PodProgramPin("sk_lookup").to_string(),
            "progs/sk_lookup"
        );
        assert_eq!(
            Target::MapAttached {
                pin: "sk_msg",
                map: "ml_short_tx"
            }
            .to_string(),
            "map ml_short_tx (progs/sk_msg)"
        );
    }

    #[test]
    fn a_line_says_what_ran_and_what_runs() {
        assert_eq!(
            entry(Outcome::Replaced).to_string(),
            "links/connect4     ml_connect4      replaced  prog id 40 -> 52, \
             tag abababababababab -> cdcdcdcdcdcdcdcd"
        );
        assert_eq!(
            entry(Outcome::Current).to_string(),
            "links/connect4     ml_connect4      current   prog id 40 tag abababababababab"
        );
        let same_code = ProgramUpgrade {
            new_tag: [0xab; 8],
            ..entry(Outcome::Replaced)
        };
        assert_eq!(
            same_code.to_string(),
            "links/connect4     ml_connect4      replaced  prog id 40 -> 52, \
             tag abababababababab (same code)"
        );
        let gone = ProgramUpgrade {
            target: Target::PodLink(4099),
            ..entry(Outcome::NetnsGone)
        };
        assert_eq!(
            gone.to_string(),
            "inbound/4099       ml_connect4      netns gone (left to GC), prog id 40"
        );
    }

    #[test]
    fn the_report_splits_replaced_from_current() {
        let report = UpgradeReport {
            programs: vec![
                entry(Outcome::Replaced),
                entry(Outcome::Current),
                entry(Outcome::Current),
                entry(Outcome::NetnsGone),
            ],
        };
        assert_eq!(report.replaced().count(), 1);
        assert_eq!(report.current().count(), 2);
        assert_eq!(report.with(Outcome::NetnsGone).count(), 1);
    }
}
