// The device's index-error record (gpu-core/src/index_check.rs): four words,
// [site, index, size, unused], zero while no kernel met a bad index. A kernel
// that includes this file binds the record as `index_error` and calls
// `report_index`; the first report wins, later ones (any thread, any
// kernel until the next readback) leave it alone.
fn report_index(site: u32, index: u32, size: u32) {
    loop {
        let r = atomicCompareExchangeWeak(&index_error[0], 0u, site);
        if r.exchanged {
            atomicStore(&index_error[1], index);
            atomicStore(&index_error[2], size);
            return;
        }
        if r.old_value != 0u {
            return; // an earlier report stands
        }
        // A weak exchange may fail spuriously: try again.
    }
}
