//! Every name the BPF side and the Rust side share: the objects (one per
//! `bpf/<object>.bpf.c`), their programs and the maps. Each name is checked
//! against the generated skeleton's typed accessors at compile time, so a
//! renamed C function or map fails the build here (`tests/bpf_names.rs` proves
//! it) instead of failing at the first ADD. No other module spells a BPF name.

use super::skel;

/// A program's or map's name, checked against the skeleton's typed accessors:
/// `checked!(connect::ConnectProgs.ml_connect4)`, `checked!(connect::ConnectMaps.ml_pods)`.
macro_rules! checked {
    ($object:ident :: $accessors:ident . $name:ident) => {{
        #[allow(dead_code)]
        fn exists(accessors: &skel::$object::$accessors<'_>) {
            let _ = &accessors.$name;
        }
        stringify!($name)
    }};
}

/// The embedded BPF objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Connect,
    Origdst,
    Shortpath,
    Sockops,
    Inbound,
}

impl Object {
    /// Load order. `Shortpath` before `Sockops`: sockets that sockops puts into
    /// `ml_short_tx` get the program the map has at that moment, and keep it.
    pub const LOAD_ORDER: [Object; 5] = [
        Object::Connect,
        Object::Origdst,
        Object::Shortpath,
        Object::Sockops,
        Object::Inbound,
    ];

    /// The object's name (`bpf/<name>.bpf.c`), as errors and reports show it.
    pub fn name(self) -> &'static str {
        match self {
            Object::Connect => "connect",
            Object::Origdst => "origdst",
            Object::Shortpath => "shortpath",
            Object::Sockops => "sockops",
            Object::Inbound => "inbound",
        }
    }
}

/// Reports (`meshlane status -o json`) show an object by its name.
impl serde::Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Program names (the C functions).
pub mod programs {
    use super::skel;

    pub const CONNECT4: &str = checked!(connect::ConnectProgs.ml_connect4);
    pub const CONNECT6: &str = checked!(connect::ConnectProgs.ml_connect6);
    pub const SENDMSG4: &str = checked!(connect::ConnectProgs.ml_sendmsg4);
    pub const SENDMSG6: &str = checked!(connect::ConnectProgs.ml_sendmsg6);
    pub const RECVMSG4: &str = checked!(connect::ConnectProgs.ml_recvmsg4);
    pub const RECVMSG6: &str = checked!(connect::ConnectProgs.ml_recvmsg6);
    pub const GETPEERNAME4: &str = checked!(connect::ConnectProgs.ml_getpeername4);
    pub const GETPEERNAME6: &str = checked!(connect::ConnectProgs.ml_getpeername6);
    pub const GETSOCKOPT: &str = checked!(origdst::OrigdstProgs.ml_getsockopt);
    pub const SOCKOPS: &str = checked!(sockops::SockopsProgs.ml_sockops);
    pub const SK_LOOKUP: &str = checked!(inbound::InboundProgs.ml_sk_lookup);
    pub const SHORT_MSG: &str = checked!(shortpath::ShortpathProgs.ml_short_msg);
}

/// Map names (pinned by name under `<root>/maps`).
pub mod maps {
    use super::skel;

    pub const PODS: &str = checked!(connect::ConnectMaps.ml_pods);
    pub const POD_IPS: &str = checked!(connect::ConnectMaps.ml_pod_ips);
    pub const PORT_RULES: &str = checked!(connect::ConnectMaps.ml_port_rules);
    pub const OUT_EXCLUDE_CIDRS: &str = checked!(connect::ConnectMaps.ml_out_exclude_cidrs);
    pub const OUT_INCLUDE_CIDRS: &str = checked!(connect::ConnectMaps.ml_out_include_cidrs);
    pub const OUT_IFACE_ROUTES: &str = checked!(connect::ConnectMaps.ml_out_iface_routes);
    pub const SK_REDIRECTS: &str = checked!(connect::ConnectMaps.ml_sk_redirects);
    pub const CONN_ORIG_DST: &str = checked!(connect::ConnectMaps.ml_conn_orig_dst);
    pub const INBOUND_LISTENERS: &str = checked!(connect::ConnectMaps.ml_inbound_listeners);
    pub const ATTACHMENTS: &str = checked!(connect::ConnectMaps.ml_attachments);
    pub const POD_INDEX: &str = checked!(connect::ConnectMaps.ml_pod_index);
    pub const NETNS_SLOTS: &str = checked!(inbound::InboundMaps.ml_netns_slots);
    pub const NETNS_TAG: &str = checked!(inbound::InboundMaps.ml_netns_tag);
    pub const COUNTERS: &str = checked!(connect::ConnectMaps.ml_counters);
    pub const SHORT_TX: &str = checked!(shortpath::ShortpathMaps.ml_short_tx);
    pub const SHORT_RX: &str = checked!(shortpath::ShortpathMaps.ml_short_rx);
    pub const SHORT_SOCKS: &str = checked!(shortpath::ShortpathMaps.ml_short_socks);
    pub const SHORT_OFFERS: &str = checked!(connect::ConnectMaps.ml_short_offers);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::*;
    use crate::datapath::loader::{MAP_PROGRAMS, NODE_PROGRAMS, POD_PROGRAMS};

    /// The program names in an object's skeleton (opened, never loaded).
    fn programs_of(object: Object) -> BTreeSet<String> {
        fn names<'obj, B: SkelBuilder<'obj>>(
            builder: B,
            storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
        ) -> BTreeSet<String>
        where
            B::Output: OpenSkel<'obj>,
        {
            let open = builder.open(storage).expect("the embedded object opens");
            open.open_object()
                .progs()
                .map(|prog| prog.name().to_string_lossy().into_owned())
                .collect()
        }
        let mut storage = MaybeUninit::uninit();
        match object {
            Object::Connect => names(skel::connect::ConnectSkelBuilder::default(), &mut storage),
            Object::Origdst => names(skel::origdst::OrigdstSkelBuilder::default(), &mut storage),
            Object::Shortpath => names(
                skel::shortpath::ShortpathSkelBuilder::default(),
                &mut storage,
            ),
            Object::Sockops => names(skel::sockops::SockopsSkelBuilder::default(), &mut storage),
            Object::Inbound => names(skel::inbound::InboundSkelBuilder::default(), &mut storage),
        }
    }

    /// A program added to `bpf/` must be attached somewhere: every program of
    /// every object is in exactly one of the loader's tables.
    #[test]
    fn the_tables_cover_every_program_of_every_object() {
        for object in Object::LOAD_ORDER {
            let mut tabled: Vec<&str> = Vec::new();
            tabled.extend(
                NODE_PROGRAMS
                    .iter()
                    .filter(|p| p.object == object)
                    .map(|p| p.program),
            );
            tabled.extend(
                POD_PROGRAMS
                    .iter()
                    .filter(|p| p.object == object)
                    .map(|p| p.program),
            );
            tabled.extend(
                MAP_PROGRAMS
                    .iter()
                    .filter(|p| p.object == object)
                    .map(|p| p.program),
            );
            let tabled_set: BTreeSet<String> = tabled.iter().map(|p| p.to_string()).collect();
            assert_eq!(
                tabled.len(),
                tabled_set.len(),
                "{object}: a program is tabled twice"
            );
            assert_eq!(programs_of(object), tabled_set, "{object}");
        }
    }
}
