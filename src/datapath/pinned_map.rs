//! A pinned map opened by path, with typed access through the contract structs.

use std::cell::OnceCell;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::abi::MapBytes;
use super::error::DatapathError;
use super::layout::PinLayout;

pub struct PinnedMap {
    name: &'static str,
    handle: MapHandle,
}

impl PinnedMap {
    pub fn open(layout: &PinLayout, name: &'static str) -> Result<Self, DatapathError> {
        let path = layout.map(name);
        let handle = MapHandle::from_pinned_path(&path)
            .map_err(|source| DatapathError::OpenMap { path, source })?;
        Ok(PinnedMap { name, handle })
    }

    /// `open`, with `None` for a map that is not pinned (a pin root made by an
    /// older meshlane): the open's ENOENT says so, no stat before it.
    pub fn open_if_pinned(
        layout: &PinLayout,
        name: &'static str,
    ) -> Result<Option<Self>, DatapathError> {
        match Self::open(layout, name) {
            Ok(map) => Ok(Some(map)),
            Err(DatapathError::OpenMap { source, .. })
                if source.kind() == libbpf_rs::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    fn access_err(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(libbpf_rs::Error) -> DatapathError {
        let map = self.name;
        move |source| DatapathError::MapAccess {
            operation,
            map,
            source,
        }
    }

    fn decode<T: MapBytes>(&self, bytes: &[u8]) -> Result<T, DatapathError> {
        T::from_bytes(bytes).ok_or(DatapathError::MapLayout {
            map: self.name,
            found: bytes.len(),
            expected: std::mem::size_of::<T>(),
        })
    }

    pub fn get<K: MapBytes, V: MapBytes>(&self, key: &K) -> Result<Option<V>, DatapathError> {
        let bytes = self
            .handle
            .lookup(key.as_bytes(), MapFlags::ANY)
            .map_err(self.access_err("lookup"))?;
        bytes.map(|bytes| self.decode(&bytes)).transpose()
    }

    pub fn put<K: MapBytes, V: MapBytes>(&self, key: &K, value: &V) -> Result<(), DatapathError> {
        self.handle
            .update(key.as_bytes(), value.as_bytes(), MapFlags::ANY)
            .map_err(self.access_err("update"))
    }

    /// Inserts a raw byte value (for the `u8` membership values of the rule maps).
    pub fn put_raw<K: MapBytes>(&self, key: &K, value: &[u8]) -> Result<(), DatapathError> {
        self.handle
            .update(key.as_bytes(), value, MapFlags::ANY)
            .map_err(self.access_err("update"))
    }

    /// Deletes a key; a key that is already gone is not an error (DEL is idempotent).
    pub fn delete<K: MapBytes>(&self, key: &K) -> Result<(), DatapathError> {
        match self.handle.delete(key.as_bytes()) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.access_err("delete")(source)),
        }
    }

    /// Every key of the map, decoded.
    pub fn keys<K: MapBytes>(&self) -> Result<Vec<K>, DatapathError> {
        self.handle
            .keys()
            .map(|bytes| self.decode(&bytes))
            .collect()
    }

    /// Every entry of the map (keys that vanish while iterating are skipped).
    pub fn entries<K: MapBytes, V: MapBytes>(&self) -> Result<Vec<(K, V)>, DatapathError> {
        let mut entries = Vec::new();
        for key in self.keys::<K>()? {
            if let Some(value) = self.get(&key)? {
                entries.push((key, value));
            }
        }
        Ok(entries)
    }

    /// Per-CPU values of a key of a per-CPU map, summed as u64 counters.
    pub fn sum_percpu_u64(&self, key: u32) -> Result<u64, DatapathError> {
        let values = self
            .handle
            .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
            .map_err(self.access_err("lookup"))?
            .unwrap_or_default();
        Ok(values
            .iter()
            .filter_map(|bytes| bytes.get(..8))
            .map(|bytes| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8])))
            .sum())
    }
}

/// A pinned map opened on first use, for callers that need only some of many.
pub struct LazyMap {
    layout: PinLayout,
    name: &'static str,
    map: OnceCell<PinnedMap>,
}

impl LazyMap {
    pub fn new(layout: &PinLayout, name: &'static str) -> Self {
        LazyMap {
            layout: layout.clone(),
            name,
            map: OnceCell::new(),
        }
    }

    pub fn open(&self) -> Result<&PinnedMap, DatapathError> {
        if let Some(map) = self.map.get() {
            return Ok(map);
        }
        let map = PinnedMap::open(&self.layout, self.name)?;
        Ok(self.map.get_or_init(|| map))
    }
}
