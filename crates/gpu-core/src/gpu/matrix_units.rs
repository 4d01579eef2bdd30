//! Matrix units (tensor cores on NVIDIA, matrix cores on AMD, simdgroup
//! matrices on Apple) as wgpu exposes them to WGSL: the experimental
//! cooperative-matrix feature. gpu-core asks for it only where the adapter
//! offers a configuration `shaders/matmul_coop.wgsl` is written for, f16
//! A/B and f32 accumulators in fragments of 16 x 16 x 16 (or 8 x 8 x 8,
//! the `matmul_coop8` variant), in subgroups of one fixed size; everywhere
//! else the tiled kernel runs the f16 products. A software adapter's
//! cooperative matrices (lavapipe's, in Mesa 26) are emulated, so they are
//! used only when asked for (`WGRAD_MATMUL_KERNEL=coop`): that is how the
//! kernel's parity tests run without a GPU (`.ci/coop-lavapipe.sh`).

/// The cooperative-matrix configuration the matmul's `main_coop` entry
/// point needs, found on an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatrixUnits {
    /// Lanes of every subgroup (the adapter's min and max subgroup size agree).
    pub subgroup_size: u32,
    /// The fragments' edge: 16 where the adapter offers 16 x 16 x 16, else 8.
    pub fragment: u32,
}

/// What `WGRAD_MATMUL_KERNEL` says about matrix units: `coop` forces them
/// (a product that cannot use them is an error), `tiled` and `subgroup`
/// forbid them, anything else (`auto`, unset) uses them where offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wish {
    Auto,
    Forced,
    Forbidden,
}

/// `WGRAD_MATMUL_KERNEL`, trimmed, if set: read once when a device opens,
/// for its matrix units ([`Wish::parse`]) and its matmul family.
pub(crate) fn kernel_from_env() -> Option<String> {
    std::env::var("WGRAD_MATMUL_KERNEL").ok().map(|v| v.trim().to_string())
}

impl Wish {
    /// Whether matrix units may be used on an adapter of this type: not
    /// when forbidden, and on a software adapter (whose units are
    /// emulated) only when forced.
    pub fn allows(self, device_type: wgpu::DeviceType) -> bool {
        match self {
            Wish::Forbidden => false,
            Wish::Auto => device_type != wgpu::DeviceType::Cpu,
            Wish::Forced => true,
        }
    }

    /// From the variable's value, if set.
    pub fn parse(value: Option<&str>) -> Wish {
        match value.map(str::trim) {
            Some("coop") => Wish::Forced,
            Some("tiled") | Some("subgroup") => Wish::Forbidden,
            _ => Wish::Auto,
        }
    }
}

/// The usable configuration on an adapter with these features, subgroup
/// sizes and cooperative-matrix configurations, or `None`.
pub(crate) fn find(
    features: wgpu::Features,
    (subgroup_min, subgroup_max): (u32, u32),
    configs: &[wgpu::CooperativeMatrixProperties],
) -> Option<MatrixUnits> {
    let needed =
        wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
    let offered = |edge: u32| {
        configs.iter().any(|c| {
            (c.m_size, c.n_size, c.k_size) == (edge, edge, edge)
                && c.ab_type == wgpu::CooperativeScalarType::F16
                && c.cr_type == wgpu::CooperativeScalarType::F32
        })
    };
    let fragment = [16, 8].into_iter().find(|&edge| offered(edge))?;
    // The kernel's workgroup is a whole number of subgroups whose size it
    // must know when the pipeline is made.
    let fixed = subgroup_min == subgroup_max && (8..=128).contains(&subgroup_min);
    (features.contains(needed) && fixed).then_some(MatrixUnits { subgroup_size: subgroup_min, fragment })
}

/// The adapter's matrix units for a device opened under `wish`.
pub(crate) fn for_adapter(adapter: &wgpu::Adapter, wish: Wish) -> Option<MatrixUnits> {
    let info = adapter.get_info();
    if !wish.allows(info.device_type) {
        return None;
    }
    find(adapter.features(), (info.subgroup_min_size, info.subgroup_max_size), &adapter.cooperative_matrix_properties())
}

/// One line on an adapter's matrix units for `devices`: the configurations
/// it lists with f16 inputs, and whether wgrad's kernel can use them.
pub(crate) fn describe(adapter: &wgpu::Adapter) -> String {
    let configs = adapter.cooperative_matrix_properties();
    if !adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) || configs.is_empty() {
        return "not offered (no cooperative-matrix feature)".into();
    }
    let listed: Vec<String> = configs
        .iter()
        .map(|c| format!("{}x{}x{} {:?}->{:?}", c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type))
        .collect();
    let used = match (for_adapter(adapter, Wish::Auto), for_adapter(adapter, Wish::Forced)) {
        (Some(u), _) => {
            format!("used for f16 products ({0}x{0}x{0} f16->f32, subgroups of {1})", u.fragment, u.subgroup_size)
        }
        (None, Some(u)) => format!(
            "emulated by a software adapter: used only under WGRAD_MATMUL_KERNEL=coop ({0}x{0}x{0} f16->f32, \
             subgroups of {1})",
            u.fragment, u.subgroup_size
        ),
        (None, None) => "not used (no 16x16x16 or 8x8x8 f16->f32 configuration in fixed-size subgroups)".into(),
    };
    format!("{used}; adapter lists {}", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        m: u32,
        ab: wgpu::CooperativeScalarType,
        cr: wgpu::CooperativeScalarType,
    ) -> wgpu::CooperativeMatrixProperties {
        wgpu::CooperativeMatrixProperties {
            m_size: m,
            n_size: m,
            k_size: m,
            ab_type: ab,
            cr_type: cr,
            saturating_accumulation: false,
        }
    }

    #[test]
    fn the_kernel_variable_forces_or_forbids_matrix_units() {
        assert_eq!(Wish::parse(Some("coop")), Wish::Forced);
        assert_eq!(Wish::parse(Some(" tiled ")), Wish::Forbidden);
        assert_eq!(Wish::parse(Some("subgroup")), Wish::Forbidden);
        assert_eq!(Wish::parse(Some("auto")), Wish::Auto);
        assert_eq!(Wish::parse(None), Wish::Auto);
        use wgpu::DeviceType::{Cpu, DiscreteGpu};
        assert!(Wish::Auto.allows(DiscreteGpu) && !Wish::Auto.allows(Cpu));
        assert!(Wish::Forced.allows(Cpu) && !Wish::Forbidden.allows(DiscreteGpu));
    }

    #[test]
    fn only_f16_shapes_with_f32_sums_in_fixed_subgroups_are_used() {
        use wgpu::CooperativeScalarType::{F16, F32};
        let all =
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let good = [config(8, F32, F32), config(8, F16, F32), config(16, F16, F32)];
        assert_eq!(find(all, (32, 32), &good), Some(MatrixUnits { subgroup_size: 32, fragment: 16 }));
        // lavapipe in Mesa 26: 8x8x8 only, 8-lane subgroups.
        let small = [config(8, F16, F16), config(8, F16, F32)];
        assert_eq!(find(all, (8, 8), &small), Some(MatrixUnits { subgroup_size: 8, fragment: 8 }));
        // 8x8 f32 only.
        assert_eq!(find(all, (32, 32), &[config(8, F32, F32)]), None);
        // f16 accumulators only.
        assert_eq!(find(all, (32, 32), &[config(16, F16, F16)]), None);
        // Subgroups of varying size (the kernel's tile split needs one).
        assert_eq!(find(all, (32, 64), &good), None);
        // The feature itself, f16 and subgroups are each needed.
        for missing in
            [wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, wgpu::Features::SHADER_F16, wgpu::Features::SUBGROUP]
        {
            assert_eq!(find(all - missing, (32, 32), &good), None, "{missing:?}");
        }
    }
}
