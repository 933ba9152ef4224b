//! Opens and loads one of the embedded BPF objects against the pin root: maps
//! pinned by name under `<root>/maps` are reused (libbpf), missing ones are
//! created and pinned. Attaching (`loader`) and upgrading (`upgrade`) both load
//! through here, so a program is always loaded the same way — an upgrade compares
//! like with like.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::error::DatapathError;
use super::layout::PinLayout;
use super::map_compat;
use super::names::Object;
use super::skel;
use super::verifier_log;

/// Loads `object` and hands the loaded object to `use_object`; the object is
/// closed afterwards (what `use_object` attached, pinned or duplicated lives on).
pub fn with_loaded<T>(
    object: Object,
    layout: &PinLayout,
    use_object: impl FnOnce(&libbpf_rs::Object) -> Result<T, DatapathError>,
) -> Result<T, DatapathError> {
    let mut storage = MaybeUninit::uninit();
    let load = Load {
        object,
        layout,
        storage: &mut storage,
        use_object,
    };
    match object {
        Object::Connect => load.run(skel::connect::ConnectSkelBuilder::default()),
        Object::Origdst => load.run(skel::origdst::OrigdstSkelBuilder::default()),
        Object::Sockops => load.run(skel::sockops::SockopsSkelBuilder::default()),
        Object::Inbound => load.run(skel::inbound::InboundSkelBuilder::default()),
        Object::Shortpath => load.run(skel::shortpath::ShortpathSkelBuilder::default()),
    }
}

/// One object to load: where its maps are pinned, the space libbpf opens it in,
/// and what to do with it once loaded.
struct Load<'obj, 'l, F> {
    object: Object,
    layout: &'l PinLayout,
    storage: &'obj mut MaybeUninit<OpenObject>,
    use_object: F,
}

impl<'obj, F> Load<'obj, '_, F> {
    /// Opens the object through its skeleton's builder, checks the pinned maps
    /// it would reuse, loads it and hands it over.
    fn run<B, T>(self, mut builder: B) -> Result<T, DatapathError>
    where
        B: SkelBuilder<'obj>,
        B::Output: OpenSkel<'obj>,
        F: FnOnce(&libbpf_rs::Object) -> Result<T, DatapathError>,
    {
        let Load {
            object,
            layout,
            storage,
            use_object,
        } = self;
        let load_err = |source, verifier_log| DatapathError::Load {
            object: object.name(),
            source,
            verifier_log,
        };
        builder
            .object_builder_mut()
            .pin_root_path(layout.maps_dir())
            .map_err(|source| load_err(source, String::new()))?;
        let (opened, log) = verifier_log::capture_during(|| builder.open(storage));
        let open = opened.map_err(|source| load_err(source, log))?;
        // libbpf would refuse a pinned map of another shape too, but only with a line
        // in its log; this names the map and says what differs.
        map_compat::check_pinned_maps(open.open_object())?;
        let (loaded, log) = verifier_log::capture_during(|| open.load());
        let skel = loaded.map_err(|source| load_err(source, log))?;
        use_object(skel.object())
    }
}
