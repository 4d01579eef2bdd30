//! Bind groups reused by what they bind. A training loop binds the same
//! pooled buffers to the same kernels in every step (the pool hands a step
//! its buffers in the same order, and the parameter chunks are reused in
//! order), so after the first step a launch finds the bind group it needs
//! instead of creating one: wgpu's validation and the driver's descriptor
//! writes are paid once per distinct binding, not once per launch.
//!
//! A bind group is identified by its layout, its parameter chunk and each
//! binding's buffer and window, so a hit binds exactly what creating one
//! would. Launches that read textures (CPU adapters' operand textures,
//! whose views change) are not cached. The cache keeps its buffers alive:
//! it is emptied with the buffer pool (`Device::empty_cache`, a new binding
//! limit) and starts over past [`CAPACITY`] entries.
//!
//! A lookup runs once per eager launch, so a hit neither allocates nor
//! clones a buffer handle: the launch's bindings are hashed in place and
//! compared against the stored key, which is built only on a miss.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

use super::window::Window;

/// Most bind groups kept (a few training steps' worth of distinct launches).
const CAPACITY: usize = 16_384;

/// What a bind group binds.
struct Key {
    /// The layout's address: layouts live as long as the device's pipeline cache.
    layout: usize,
    params: wgpu::Buffer,
    /// Inputs then outputs: the buffer and the window bound (`None`: whole).
    bindings: Vec<(wgpu::Buffer, Option<Window>)>,
}

impl Key {
    /// Whether this key binds exactly `layout`, `params` and `bindings`.
    fn matches<'a>(
        &self,
        layout: usize,
        params: &wgpu::Buffer,
        mut bindings: impl Iterator<Item = (&'a wgpu::Buffer, Option<Window>)>,
    ) -> bool {
        self.layout == layout
            && self.params == *params
            && self.bindings.iter().all(|(b, w)| bindings.next().is_some_and(|(nb, nw)| nb == b && nw == *w))
            && bindings.next().is_none()
    }
}

/// The hash of what a launch binds (the map's key; equal hashes are told
/// apart by [`Key::matches`]).
fn fingerprint<'a>(
    layout: usize,
    params: &wgpu::Buffer,
    bindings: impl Iterator<Item = (&'a wgpu::Buffer, Option<Window>)>,
) -> u64 {
    let mut h = FxHasher::default();
    layout.hash(&mut h);
    params.hash(&mut h);
    for (b, w) in bindings {
        b.hash(&mut h);
        w.hash(&mut h);
    }
    h.finish()
}

/// The cache of one device (kept in its batch, under the batch's lock).
#[derive(Default)]
pub(crate) struct BindGroups {
    /// By fingerprint; a bucket holds more than one entry only on a collision.
    map: FxHashMap<u64, Vec<(Key, wgpu::BindGroup)>>,
}

impl BindGroups {
    /// The bind group of `layout` binding `params` and `bindings`, made by
    /// `create` when none is cached; also whether it was created.
    pub fn get_or_create<'a>(
        &mut self,
        layout: &Arc<wgpu::BindGroupLayout>,
        params: &wgpu::Buffer,
        bindings: impl Iterator<Item = (&'a wgpu::Buffer, Option<Window>)> + Clone,
        create: impl FnOnce() -> crate::Result<wgpu::BindGroup>,
    ) -> crate::Result<(wgpu::BindGroup, bool)> {
        let layout = Arc::as_ptr(layout) as usize;
        let hash = fingerprint(layout, params, bindings.clone());
        if let Some(bucket) = self.map.get(&hash) {
            if let Some((_, group)) = bucket.iter().find(|(k, _)| k.matches(layout, params, bindings.clone())) {
                return Ok((group.clone(), false));
            }
        }
        let group = create()?;
        // Buckets, not groups: they differ only on collisions.
        if self.map.len() >= CAPACITY {
            self.clear();
        }
        let key = Key { layout, params: params.clone(), bindings: bindings.map(|(b, w)| (b.clone(), w)).collect() };
        self.map.entry(hash).or_default().push((key, group.clone()));
        Ok((group, true))
    }

    /// Forgets every bind group (and the buffers they kept alive).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
