// Hand-written, not generated (kernels/io.rs): a recurrent cell's update in the product's store (its inputs are the generated cell_inputs library).
// An LSTM step's cell run in the store of its recurrent product, in place
// of matmul_store.wgsl (the matmul's `_cell` variants): the product's sums
// never reach memory and the cell costs no launch of its own. The math is
// lstm_cell.wgsl's (as in recurrent.wgsl), for one time t per launch (offsets in p.cell_*):
//
// CELL 1, forward: the product is h_prev @ W_hhᵀ with W_hh's rows
//   interleaved per hidden unit (row 4u + k is gate k of unit u), so the
//   four consecutive columns a store gets are one unit's gates i, f, g, o.
//   It adds xw[t] and b_hh (gate-major, as PyTorch lays them out), writes
//   c and h into `states`, the gates into `saved`, and (NEXT) h again into
//   `h_next`, the next step's A: a launch may not bind a buffer it writes
//   as an input, and the states are written.
// CELL 2, backward: the product is dgates_{t'} @ W_hh for the step t'
//   processed before t, so column u of its sums is unit u's dh_rec at t.
//   With dy[t] it runs the cell backward and writes dxw[t] (gate-major),
//   the new dc carry and (NEXT) the gate gradients again into `dg_next`, the
//   next step's A. (The h carry is zero here: only the first step processed,
//   run by recurrent.wgsl, sees dh_n.)
//
// Bindings: 3-5 read (buffers, or textures in the `_tex` variant), 6-8
// read-write:
//   CELL 1: 3 b_hh (unused without CELL_BIAS), 4 xw, 5 unused;
//           6 states, 7 saved, 8 h_next (unused without NEXT).
//   CELL 2: 3 saved, 4 dy, 5 states; 6 dxw, 7 carry ([2, B, H]: h, c),
//           8 dg_next (unused without NEXT).
//#include lstm_cell.wgsl
//#include cell_inputs_f32.wgsl
@group(0) @binding(6) var<storage, read_write> out6: array<f32>;
@group(0) @binding(7) var<storage, read_write> out7: array<f32>;
@group(0) @binding(8) var<storage, read_write> out8: array<f32>;

// 1: LSTM forward, 2: LSTM backward.
override CELL: u32 = 1u;
// Whether the store also writes the next step's A (binding 8). Off where
// A is read through a texture (CPU adapters): the texture is a copy made
// before the launch, so A can be the states or dxw rows themselves.
override NEXT: bool = true;
// Forward: b_hh is bound and added. A constant: as a select on a parameter
// every store read four bias texels it then dropped, and the LSTM layers
// give b_hh to the input product instead (nn's Recurrent), so a model
// compiles one of the two variants.
override CELL_BIAS: bool = false;

// The cell variants add no bias through the epilogue's path (the forward
// reads b_hh in its store: read here, once per lane, its select made the
// forward launch 10x slower on lavapipe).
fn column_bias(tl: Tile, col: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn row_bias(tl: Tile, row: u32) -> f32 {
    return 0.0;
}

// Row `row` (a batch row) at columns col..col + 3 of the sums `s`.
fn store_sums(tl: Tile, row: u32, col: u32, s: vec4<f32>, b: vec4<f32>) {
    if row >= p.m || col >= p.n {
        return;
    }
    if CELL == 1u {
        lstm_forward(row, col / 4u, s);
        return;
    }
    // Backward: four units, those that exist (H need not be a multiple of 4).
    for (var q = 0u; q < 4u; q++) {
        if col + q < p.n {
            lstm_backward(row, col + q, s[q]);
        }
    }
}

// Unit u of batch row b at time t, from its four gate sums of h_prev @ W_hhᵀ.
fn lstm_forward(b: u32, u: u32, s: vec4<f32>) {
    let hd = p.cell_hidden;
    let x0 = p.cell_x + b * 4u * hd + u;
    var a = s + vec4(load_in4(x0), load_in4(x0 + hd), load_in4(x0 + 2u * hd), load_in4(x0 + 3u * hd));
    if CELL_BIAS {
        a += vec4(load_in3(u), load_in3(hd + u), load_in3(2u * hd + u), load_in3(3u * hd + u));
    }
    let i = b * hd + u;
    let step = lstm_step(a, out6[p.cell_c + p.cell_prev + i]);
    out6[p.cell_c + p.cell_out + i] = step.c;
    out6[p.cell_out + i] = step.h;
    if NEXT {
        out8[i] = step.h;
    }
    out7[x0] = step.gates.x;
    out7[x0 + hd] = step.gates.y;
    out7[x0 + 2u * hd] = step.gates.z;
    out7[x0 + 3u * hd] = step.gates.w;
}

// Unit u of batch row b at time t, with dh_rec its sum of dgates @ W_hh.
fn lstm_backward(b: u32, u: u32, dh_rec: f32) {
    let hd = p.cell_hidden;
    let bh = p.m * hd;
    let i = b * hd + u;
    let x0 = p.cell_x + b * 4u * hd + u;
    let dh = load_in4(p.cell_dy + i) + dh_rec;
    let gates = vec4(load_in3(x0), load_in3(x0 + hd), load_in3(x0 + 2u * hd), load_in3(x0 + 3u * hd));
    let c = load_in5(p.cell_c + p.cell_out + i);
    let g = lstm_step_grad(gates, c, load_in5(p.cell_c + p.cell_prev + i), dh, out7[bh + i]);
    out6[x0] = g.d.x;
    out6[x0 + hd] = g.d.y;
    out6[x0 + 2u * hd] = g.d.z;
    out6[x0 + 3u * hd] = g.d.w;
    out7[bh + i] = g.dc_prev;
    if NEXT {
        let g0 = b * 4u * hd + u;
        out8[g0] = g.d.x;
        out8[g0 + hd] = g.d.y;
        out8[g0 + 2u * hd] = g.d.z;
        out8[g0 + 3u * hd] = g.d.w;
    }
}
