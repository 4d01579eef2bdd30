// Hand-written, not generated (kernels/io.rs): the product's epilogue is arithmetic, not storage boilerplate.
// The store of a product's f32 sums (matmul.wgsl and matmul_subgroup.wgsl
// call `store_sums` with four consecutive columns, `col` a multiple of 4):
// the epilogue. The `_act` variants swap its last include for
// matmul_store_sums_act.wgsl (any unary op after the bias); the `_cell` variants of the matmul swap this file for
// matmul_store_cell.wgsl, which stores a recurrent cell's results instead.
// The bias (bias_axis > 0), the residual (RESIDUAL; the host binds some
// other buffer when there is none) and C, as words: f32 bits, or two f16
// halves (F16_OUT). Binding 3 holds a ReLU gradient's `y` instead when the
// fuser merges one (RELU_GRAD; a gradient's product has no bias). The
// residual and `y` are words like C: f32 bits, or f16 halves when C is f16
// (only the fuser's tails give an f16 store either).

@group(0) @binding(3) var<storage, read> bias: array<u32>;
@group(0) @binding(4) var<storage, read> residual: array<u32>;
@group(0) @binding(5) var<storage, read_write> c: array<u32>;

// The bias of columns col..col + 3 (bias_axis 2, else zero). Columns
// beyond N read the last one; they are not stored.
fn column_bias(tl: Tile, col: u32) -> vec4<f32> {
    if p.bias_axis != 2u {
        return vec4<f32>(0.0);
    }
    let at = vec4<u32>(tl.bias_base + col) + vec4<u32>(0u, 1u, 2u, 3u);
    let i = min(at, vec4<u32>(tl.bias_base + p.n - 1u));
    return bitcast<vec4<f32>>(vec4<u32>(bias[i.x], bias[i.y], bias[i.z], bias[i.w]));
}

// The bias of row `row` (bias_axis 1, else zero), clamped into the matrix.
fn row_bias(tl: Tile, row: u32) -> f32 {
    if p.bias_axis != 1u {
        return 0.0;
    }
    return bitcast<f32>(bias[tl.bias_base + min(row, p.m - 1u)]);
}

// The f32 sums times p.scale plus their bias `b`, then the ReLU when
// p.relu is set.
fn epilogue(sums: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    let v = p.scale * sums + b;
    return select(v, relu4(v), p.relu != 0u);
}

// Writes the columns col.. (col a multiple of 4) of `v`, the epilogue's
// result, that exist to row `row` of C.
fn store_c(tl: Tile, row: u32, col: u32, v: vec4<f32>) {
    if row >= p.m {
        return;
    }
    let i = tl.c_base + row * p.n + col;
    if F16_OUT {
        // i is even (N is); the columns that exist come in pairs.
        // The unfused steps' order and roundings: the product's f16 value,
        // the f16 sum with the residual, then the mask (a value past f16's
        // range is inf by then; the mask passes it or gives 0, as unfused).
        var w = v;
        if RESIDUAL || RELU_GRAD {
            w = round_f16(v);
        }
        if RESIDUAL {
            w = round_f16(w + halves4(residual[i / 2u], residual[i / 2u + 1u], col));
        }
        if RELU_GRAD {
            // As unary_grad.wgsl computes it on the widened y (ReLU is gated).
            w = select(vec4<f32>(0.0), w, relu_passes4(halves4(bias[i / 2u], bias[i / 2u + 1u], col)));
        }
        if col < p.n {
            c[i / 2u] = pack_halves(w.xy);
        }
        if col + 2u < p.n {
            c[i / 2u + 1u] = pack_halves(w.zw);
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if col + j < p.n {
            var x = v[j];
            if RESIDUAL {
                x += bitcast<f32>(residual[i + j]);
            }
            if RELU_GRAD {
                // As unary_grad.wgsl computes it: ReLU is gated, so 0
                // where y <= 0 (whatever g is), else g.
                x = select(0.0, x, relu_passes(bitcast<f32>(bias[i + j])));
            }
            c[i + j] = bitcast<u32>(x);
        }
    }
}

// Elements i..i + 3 (i even) of packed f16 storage, widened as the casts
// widen them, given words i / 2 and i / 2 + 1: the second pair is 0 past N
// (columns col..).
fn halves4(lo: u32, hi: u32, col: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(lo), unpack2x16float(select(0u, hi, col + 2u < p.n)));
}

// `store_sums`, the function the kernels call: the epilogue as above, or
// in the `_act` variants an activation from the unary op table after it
// (matmul_store_sums_act.wgsl).
//#include matmul_store_sums.wgsl
