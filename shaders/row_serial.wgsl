// The thread-per-row entries of the row kernels (softmax.wgsl, norm.wgsl):
// one thread per row, SERIAL_ROWS rows a workgroup, no workgroup memory and
// no barrier (on llvmpipe a barrier turns the whole shader into a
// coroutine). The host picks them on CPU adapters (ops/rows.rs, whose
// SERIAL_ROWS a test checks against this one). Needs `p.row0`.

const SERIAL_ROWS: u32 = 64u;

// The row of thread `lid` of workgroup `wid` (past `p.rows` in the last
// workgroup: the caller returns).
fn serial_row(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return p.row0 + linear_workgroup(wid, nwg) * SERIAL_ROWS + lid;
}
