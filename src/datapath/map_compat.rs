//! Can this build reuse the maps pinned under the root? libbpf reuses a pinned
//! map only when its type, key and value sizes, entry count and flags match the
//! object's definition. Maps hold the node's state (pod records, connections'
//! original destinations, short-path sockets) and are never replaced in place: a
//! build whose map differs needs a planned migration (docs/upgrade.md), and must
//! be stopped before it attaches anything.
//!
//! Only the shape is compared, as libbpf does: a struct whose fields moved
//! without changing its size is not detected here. So the contract structs in
//! `bpf/` may change only in ways a record of the previous version still reads
//! right in (new meaning in bits that were zero, as the "no entries" flags of
//! `ml_pod` in `bpf/meshlane.h`); anything else is a layout change.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use libbpf_rs::{AsRawLibbpf, MapCore, MapHandle, MapType, OpenMap, OpenObject};

use super::error::DatapathError;

/// The shape libbpf compares before it reuses a pinned map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapShape {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapShape {
    fn of_open(map: &OpenMap<'_>) -> Self {
        MapShape {
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            flags: map.map_flags(),
        }
    }

    fn of_pinned(path: &Path) -> Result<Self, libbpf_rs::Error> {
        let map = MapHandle::from_pinned_path(path)?;
        let info = map.info()?;
        Ok(MapShape {
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            flags: info.info.map_flags,
        })
    }

    /// The fields libbpf compares, each named as an operator reads it.
    fn fields(&self) -> [(&'static str, String); 5] {
        [
            ("type", format!("{:?}", self.map_type)),
            ("key size", self.key_size.to_string()),
            ("value size", self.value_size.to_string()),
            ("max entries", self.max_entries.to_string()),
            ("flags", format!("{:#x}", self.flags)),
        ]
    }

    /// What differs, pinned first ("value size 48 pinned, 56 in this build").
    pub fn differences(&self, wanted: &MapShape) -> Vec<String> {
        self.fields()
            .into_iter()
            .zip(wanted.fields())
            .filter(|((_, pinned), (_, ours))| pinned != ours)
            .map(|((what, pinned), (_, ours))| {
                format!("{what} {pinned} pinned, {ours} in this build")
            })
            .collect()
    }
}

/// Where libbpf will look for this map's pin (set for maps pinned by name).
fn pin_path(map: &OpenMap<'_>) -> Option<PathBuf> {
    // SAFETY: the map pointer is valid while `map` borrows its object; libbpf
    // returns NULL or a NUL-terminated string owned by the map, copied at once.
    unsafe {
        let path = libbpf_rs::libbpf_sys::bpf_map__pin_path(map.as_libbpf_object().as_ptr());
        (!path.is_null()).then(|| PathBuf::from(CStr::from_ptr(path).to_string_lossy().as_ref()))
    }
}

/// Fails with the first pinned map this object cannot reuse.
pub fn check_pinned_maps(object: &OpenObject) -> Result<(), DatapathError> {
    for map in object.maps() {
        let Some(path) = pin_path(&map) else {
            continue;
        };
        // Checked first: an absent pin is simply created at load.
        if !path.exists() {
            continue;
        }
        let name = map.name().to_string_lossy().into_owned();
        let pinned = MapShape::of_pinned(&path).map_err(|source| DatapathError::OpenMap {
            path: path.clone(),
            source,
        })?;
        let differences = pinned.differences(&MapShape::of_open(&map));
        if !differences.is_empty() {
            return Err(DatapathError::MapIncompatible {
                map: name,
                path,
                detail: differences.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> MapShape {
        MapShape {
            map_type: MapType::Hash,
            key_size: 8,
            value_size: 48,
            max_entries: 1024,
            flags: 1,
        }
    }

    #[test]
    fn the_same_shape_has_no_differences() {
        assert!(shape().differences(&shape()).is_empty());
    }

    #[test]
    fn each_difference_is_named_pinned_first() {
        let ours = MapShape {
            value_size: 56,
            max_entries: 2048,
            ..shape()
        };
        assert_eq!(
            shape().differences(&ours),
            vec![
                "value size 48 pinned, 56 in this build".to_owned(),
                "max entries 1024 pinned, 2048 in this build".to_owned(),
            ]
        );
    }
}
