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

use std::collections::HashMap;
use std::sync::Arc;

use super::batch::Window;

/// Most bind groups kept (a few training steps' worth of distinct launches).
const CAPACITY: usize = 16_384;

/// What a bind group binds.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    /// The layout's address: layouts live as long as the device's pipeline cache.
    layout: usize,
    params: wgpu::Buffer,
    /// Inputs then outputs: the buffer and the window bound (`None`: whole).
    bindings: Vec<(wgpu::Buffer, Option<Window>)>,
}

/// The cache of one device (kept in its batch, under the batch's lock).
#[derive(Default)]
pub(crate) struct BindGroups {
    map: HashMap<Key, wgpu::BindGroup>,
}

impl BindGroups {
    /// The bind group of `layout` binding `params` and `bindings`, made by
    /// `create` when none is cached; also whether it was created.
    pub fn get_or_create(
        &mut self,
        layout: &Arc<wgpu::BindGroupLayout>,
        params: &wgpu::Buffer,
        bindings: impl Iterator<Item = (wgpu::Buffer, Option<Window>)>,
        create: impl FnOnce() -> crate::Result<wgpu::BindGroup>,
    ) -> crate::Result<(wgpu::BindGroup, bool)> {
        let key = Key { layout: Arc::as_ptr(layout) as usize, params: params.clone(), bindings: bindings.collect() };
        if let Some(group) = self.map.get(&key) {
            return Ok((group.clone(), false));
        }
        let group = create()?;
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        self.map.insert(key, group.clone());
        Ok((group, true))
    }

    /// Forgets every bind group (and the buffers they kept alive).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
