//! A recurrent op (RNN, LSTM, GRU over a sequence) unrolled into ONNX
//! nodes, one step per time index, with wgrad's (PyTorch's) gate order and
//! equations. Unrolled rather than ONNX's LSTM/GRU node, whose gate order
//! (i, o, f, c) and stacked weights would not keep the state-dict names as
//! initializers; the sequence length is fixed by the trace.

use wgrad_autograd::RecurrentKind;

use crate::builder::{Attr, Builder};
use crate::ops::{Ctx, Problem};

/// Inputs: xw `[T, B, G·H]` (x W_ihᵀ + b_ih), w_hh, b_hh?, h0, c0?.
/// Returns the values of the states `[T, B, H]`, h_n and (LSTM) c_n.
pub(crate) fn unroll(b: &mut Builder, c: &Ctx, kind: RecurrentKind, reverse: bool) -> Result<Vec<String>, Problem> {
    let t_len = c.in_shape(0)[0];
    if t_len == 0 {
        return Err(Problem::Unsupported("a recurrent op over an empty sequence".into()));
    }
    let xw = c.x(0);
    let wt = b.op("Transpose", &[&c.x(1)], vec![("perm", Attr::Ints(vec![1, 0]))]);
    let bias = c.has(2).then(|| c.x(2));
    let mut h = c.x(3);
    let mut cell = c.has(4).then(|| c.x(4));
    let axis0 = b.ints(&[0]);
    let gates = kind.gates();
    let mut states = vec![String::new(); t_len];
    let order: Vec<usize> = if reverse { (0..t_len).rev().collect() } else { (0..t_len).collect() };
    for t in order {
        let (start, end) = (b.ints(&[t as i64]), b.ints(&[t as i64 + 1]));
        let xt = b.op("Slice", &[&xw, &start, &end, &axis0], vec![]);
        let xt = b.op("Squeeze", &[&xt, &axis0], vec![]);
        let mut hw = b.op("MatMul", &[&h, &wt], vec![]);
        if let Some(bias) = &bias {
            hw = b.op("Add", &[&hw, bias], vec![]);
        }
        h = match kind {
            RecurrentKind::RnnTanh | RecurrentKind::RnnRelu => {
                let a = b.op("Add", &[&xt, &hw], vec![]);
                b.op(if kind == RecurrentKind::RnnTanh { "Tanh" } else { "Relu" }, &[&a], vec![])
            }
            RecurrentKind::Lstm => {
                let a = b.op("Add", &[&xt, &hw], vec![]);
                let g = b.node("Split", &[&a], gates, vec![("axis", Attr::Int(1))]);
                let i = b.op("Sigmoid", &[&g[0]], vec![]);
                let f = b.op("Sigmoid", &[&g[1]], vec![]);
                let gg = b.op("Tanh", &[&g[2]], vec![]);
                let o = b.op("Sigmoid", &[&g[3]], vec![]);
                let prev = cell.clone().expect("an LSTM has c0");
                let fc = b.op("Mul", &[&f, &prev], vec![]);
                let ig = b.op("Mul", &[&i, &gg], vec![]);
                let next = b.op("Add", &[&fc, &ig], vec![]);
                let tc = b.op("Tanh", &[&next], vec![]);
                cell = Some(next);
                b.op("Mul", &[&o, &tc], vec![])
            }
            RecurrentKind::Gru => {
                // r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r·h_n),
                // h' = n + z·(h − n).
                let xs = b.node("Split", &[&xt], gates, vec![("axis", Attr::Int(1))]);
                let hs = b.node("Split", &[&hw], gates, vec![("axis", Attr::Int(1))]);
                let r = b.op("Add", &[&xs[0], &hs[0]], vec![]);
                let r = b.op("Sigmoid", &[&r], vec![]);
                let z = b.op("Add", &[&xs[1], &hs[1]], vec![]);
                let z = b.op("Sigmoid", &[&z], vec![]);
                let rh = b.op("Mul", &[&r, &hs[2]], vec![]);
                let n = b.op("Add", &[&xs[2], &rh], vec![]);
                let n = b.op("Tanh", &[&n], vec![]);
                let d = b.op("Sub", &[&h, &n], vec![]);
                let zd = b.op("Mul", &[&z, &d], vec![]);
                b.op("Add", &[&n, &zd], vec![])
            }
        };
        states[t] = b.op("Unsqueeze", &[&h, &axis0], vec![]);
    }
    let refs: Vec<&str> = states.iter().map(String::as_str).collect();
    let output = if refs.len() == 1 {
        b.op("Identity", &refs, vec![])
    } else {
        b.op("Concat", &refs, vec![("axis", Attr::Int(0))])
    };
    let mut outs = vec![output, b.op("Identity", &[&h], vec![])];
    if let Some(cell) = cell {
        outs.push(b.op("Identity", &[&cell], vec![]));
    }
    Ok(outs)
}
