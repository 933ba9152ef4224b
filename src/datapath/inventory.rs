//! What is loaded, attached, pinned and linked under a pin root — probed in
//! one place. `ensure_attached` (is anything missing?), CNI CHECK (what is
//! missing?), the agent's readiness and metrics (how many?) and `meshlane
//! status` (show it all) read the same probe, so they never disagree about
//! what "attached" means.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;

use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::Link;
use serde_json::{json, Value};

use super::bpffs::open_pin;
use super::error::DatapathError;
use super::inbound_link;
use super::layout::PinLayout;
use super::loader::{
    map_program_attachment, MapAttachment, MapProgram, NodeProgram, PodProgram, MAP_PROGRAMS,
    NODE_PROGRAMS, POD_PROGRAMS,
};
use super::prog_identity::prog_id;

/// A node program's pinned cgroup link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CgroupLink {
    pub link_id: u32,
    pub prog_id: u32,
    pub cgroup_id: u64,
}

impl CgroupLink {
    /// The cgroup link pinned at `path`; `None` when there is no pin or it is
    /// another kind of link.
    pub fn pinned_at(path: &Path) -> Option<CgroupLink> {
        let link = open_pin(path).ok()?;
        let info = LinkInfo::from_fd(link.as_fd()).ok()?;
        match info.info {
            LinkTypeInfo::Cgroup(cgroup) => Some(CgroupLink {
                link_id: info.id,
                prog_id: info.prog_id,
                cgroup_id: cgroup.cgroup_id,
            }),
            _ => None,
        }
    }
}

/// How a map program (the short path's `sk_msg`) is attached, with its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapProgramState {
    pub attachment: MapAttachment,
    pub prog_id: u32,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub layout: PinLayout,
    /// Each node program and its link, `None` when no link is pinned (or the
    /// pin is not a cgroup link).
    pub node_programs: Vec<(NodeProgram, Option<CgroupLink>)>,
    /// Each map program, `None` when it is not attached to its pinned map.
    pub map_programs: Vec<(MapProgram, Option<MapProgramState>)>,
    /// Each per-pod program and its pinned program's id, `None` when unpinned.
    pub pod_programs: Vec<(PodProgram, Option<u32>)>,
}

impl Inventory {
    /// Reads the pins under `layout` (one open per pin; no pod link is read).
    pub fn probe(layout: &PinLayout) -> Inventory {
        Inventory {
            layout: layout.clone(),
            node_programs: each(&NODE_PROGRAMS, |program| {
                CgroupLink::pinned_at(&layout.link(program.link))
            }),
            map_programs: each(&MAP_PROGRAMS, |program| map_program_state(layout, program)),
            pod_programs: each(&POD_PROGRAMS, |program| pinned_program_id(layout, program)),
        }
    }

    /// Node programs whose link is attached to cgroup `cgroup_id`.
    pub fn node_programs_on(&self, cgroup_id: u64) -> usize {
        self.node_programs
            .iter()
            .filter(|(_, link)| link.is_some_and(|link| link.cgroup_id == cgroup_id))
            .count()
    }

    /// What is missing for the node to capture, one line each (empty: nothing).
    pub fn missing(&self) -> Vec<String> {
        let layout = &self.layout;
        let node = absent(&self.node_programs).map(|program| {
            format!(
                "node program {} is not attached (no link pinned at {})",
                program.program,
                layout.link(program.link).display()
            )
        });
        let map = absent(&self.map_programs).map(|program| {
            format!(
                "{} is not attached to map {} (no link at {}, no program at {})",
                program.program,
                program.map,
                layout.link(program.pin).display(),
                layout.prog(program.pin).display()
            )
        });
        let pod = absent(&self.pod_programs).map(|program| {
            format!(
                "per-pod program {} is not pinned at {}",
                program.program,
                layout.prog(program.pin).display()
            )
        });
        node.chain(map).chain(pod).collect()
    }

    /// Everything is in place, for `cgroup_id`. A node program linked to another
    /// cgroup is an error: one pin root serves one cgroup.
    pub fn complete_for(&self, cgroup_id: u64, cgroup: &Path) -> Result<bool, DatapathError> {
        for (_, link) in &self.node_programs {
            if let Some(link) = link {
                if link.cgroup_id != cgroup_id {
                    return Err(DatapathError::CgroupMismatch {
                        root: self.layout.root().to_path_buf(),
                        cgroup: cgroup.to_path_buf(),
                        attached: link.cgroup_id,
                        wanted: cgroup_id,
                    });
                }
            }
        }
        Ok(self.missing().is_empty())
    }

    /// How many pods' inbound links run each program id (after an upgrade, all
    /// the pinned one). Reads every pod link: for `meshlane status`, not ADD.
    pub fn pod_links_by_program(&self) -> BTreeMap<u32, usize> {
        let mut by_program = BTreeMap::new();
        for cookie in inbound_link::linked_cookies(&self.layout) {
            let prog_id = Link::open(self.layout.inbound_link(cookie))
                .and_then(|link| link.info())
                .map(|info| info.prog_id)
                .unwrap_or(0);
            *by_program.entry(prog_id).or_default() += 1;
        }
        by_program
    }
}

/// `meshlane status -o json` shows the inventory as it is: each program with
/// its object and function, and what holds it in place (`null`: missing).
impl serde::Serialize for Inventory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let node: Vec<Value> = self
            .node_programs
            .iter()
            .map(|(program, link)| program_json(program, "attached", json!(link)))
            .collect();
        let map: Vec<Value> = self
            .map_programs
            .iter()
            .map(|(program, state)| {
                let attached = state.map(|state| match state.attachment {
                    MapAttachment::Link {
                        link_id, map_id, ..
                    } => json!({"prog_id": state.prog_id, "via": "link", "link_id": link_id, "map_id": map_id}),
                    MapAttachment::Map => json!({"prog_id": state.prog_id, "via": "map"}),
                });
                program_json(program, "attached", json!(attached))
            })
            .collect();
        let pod: Vec<Value> = self
            .pod_programs
            .iter()
            .map(|(program, prog_id)| program_json(program, "prog_id", json!(prog_id)))
            .collect();
        json!({
            "pin_root": self.layout.root(),
            "node_programs": node,
            "map_programs": map,
            "pod_programs": pod,
            "missing": self.missing(),
        })
        .serialize(serializer)
    }
}

/// A program of a table as its fields (pin, object, function…) and what `key`
/// says of it.
fn program_json(program: &impl serde::Serialize, key: &str, state: Value) -> Value {
    let mut value = json!(program);
    value[key] = state;
    value
}

/// Each program of a table with what `state` finds of it.
fn each<P: Copy, S>(programs: &[P], state: impl Fn(&P) -> Option<S>) -> Vec<(P, Option<S>)> {
    programs
        .iter()
        .map(|program| (*program, state(program)))
        .collect()
}

/// The programs of an inventory list that nothing holds in place.
fn absent<P, S>(list: &[(P, Option<S>)]) -> impl Iterator<Item = &P> {
    list.iter()
        .filter(|(_, state)| state.is_none())
        .map(|(program, _)| program)
}

fn map_program_state(layout: &PinLayout, program: &MapProgram) -> Option<MapProgramState> {
    let attachment = map_program_attachment(layout, program)?;
    let prog_id = match attachment {
        MapAttachment::Link { prog_id, .. } => prog_id,
        MapAttachment::Map => prog_id(open_pin(&layout.prog(program.pin)).ok()?.as_fd()).ok()?,
    };
    Some(MapProgramState {
        attachment,
        prog_id,
    })
}

fn pinned_program_id(layout: &PinLayout, program: &PodProgram) -> Option<u32> {
    prog_id(open_pin(&layout.prog(program.pin)).ok()?.as_fd()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_each_absent_program_and_its_pin() {
        let mut inventory = Inventory {
            layout: PinLayout::new(Path::new("/pins")),
            node_programs: NODE_PROGRAMS.iter().map(|p| (*p, None)).collect(),
            map_programs: MAP_PROGRAMS.iter().map(|p| (*p, None)).collect(),
            pod_programs: POD_PROGRAMS.iter().map(|p| (*p, None)).collect(),
        };
        let missing = inventory.missing();
        let count = NODE_PROGRAMS.len() + MAP_PROGRAMS.len() + POD_PROGRAMS.len();
        assert_eq!(missing.len(), count, "{missing:#?}");
        assert_eq!(
            missing[0],
            "node program ml_connect4 is not attached (no link pinned at /pins/links/connect4)"
        );
        assert_eq!(
            missing[count - 2],
            "ml_short_msg is not attached to map ml_short_tx \
             (no link at /pins/links/sk_msg, no program at /pins/progs/sk_msg)"
        );
        assert_eq!(
            missing[count - 1],
            "per-pod program ml_sk_lookup is not pinned at /pins/progs/sk_lookup"
        );
        inventory.pod_programs[0].1 = Some(7);
        assert_eq!(inventory.missing().len(), count - 1);
    }

    #[test]
    fn the_json_shows_each_program_and_what_holds_it() {
        let inventory = Inventory {
            layout: PinLayout::new(Path::new("/pins")),
            node_programs: vec![
                (
                    NODE_PROGRAMS[0],
                    Some(CgroupLink {
                        link_id: 1,
                        prog_id: 2,
                        cgroup_id: 3,
                    }),
                ),
                (NODE_PROGRAMS[1], None),
            ],
            map_programs: vec![
                (
                    MAP_PROGRAMS[0],
                    Some(MapProgramState {
                        attachment: MapAttachment::Link {
                            link_id: 4,
                            map_id: 5,
                            prog_id: 6,
                        },
                        prog_id: 6,
                    }),
                ),
                (
                    MAP_PROGRAMS[0],
                    Some(MapProgramState {
                        attachment: MapAttachment::Map,
                        prog_id: 7,
                    }),
                ),
                (MAP_PROGRAMS[0], None),
            ],
            pod_programs: vec![(POD_PROGRAMS[0], Some(8)), (POD_PROGRAMS[0], None)],
        };
        let value = serde_json::to_value(&inventory).unwrap();
        assert_eq!(
            value["node_programs"],
            json!([
                {"link": "connect4", "object": "connect", "program": "ml_connect4",
                 "attached": {"link_id": 1, "prog_id": 2, "cgroup_id": 3}},
                {"link": "connect6", "object": "connect", "program": "ml_connect6",
                 "attached": null},
            ])
        );
        let sk_msg = json!({"pin": "sk_msg", "object": "shortpath", "program": "ml_short_msg",
                            "map": "ml_short_tx"});
        let with = |attached: Value| {
            let mut program = sk_msg.clone();
            program["attached"] = attached;
            program
        };
        assert_eq!(
            value["map_programs"],
            json!([
                with(json!({"prog_id": 6, "via": "link", "link_id": 4, "map_id": 5})),
                with(json!({"prog_id": 7, "via": "map"})),
                with(Value::Null),
            ])
        );
        assert_eq!(
            value["pod_programs"],
            json!([
                {"pin": "sk_lookup", "object": "inbound", "program": "ml_sk_lookup", "prog_id": 8},
                {"pin": "sk_lookup", "object": "inbound", "program": "ml_sk_lookup", "prog_id": null},
            ])
        );
        assert_eq!(value["pin_root"], "/pins");
        assert_eq!(value["missing"].as_array().unwrap().len(), 3);
    }
}
