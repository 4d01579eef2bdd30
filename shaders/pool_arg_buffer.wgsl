// Max pooling backward's argmax input (u32 per output element) in a storage
// buffer; pool_io_tex.wgsl reads it through a texture instead.
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;

fn load_arg(o: u32) -> u32 {
    return arg_in[o];
}
