//! The generated skeletons, one per `bpf/<job>.bpf.c`.
#![allow(
    clippy::all,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]

pub mod connect {
    include!(concat!(env!("OUT_DIR"), "/connect.skel.rs"));
}
pub mod origdst {
    include!(concat!(env!("OUT_DIR"), "/origdst.skel.rs"));
}
pub mod inbound {
    include!(concat!(env!("OUT_DIR"), "/inbound.skel.rs"));
}
pub mod sockops {
    include!(concat!(env!("OUT_DIR"), "/sockops.skel.rs"));
}
pub mod shortpath {
    include!(concat!(env!("OUT_DIR"), "/shortpath.skel.rs"));
}
