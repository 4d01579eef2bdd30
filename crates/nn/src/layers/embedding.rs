//! Lookup tables.

use wgrad_autograd::{Device, Generator, Tensor};

use crate::init;
use crate::Module;

/// Maps U32 ids to rows of `weight [num_embeddings, dim]` (init N(0, 1) like PyTorch).
#[derive(Module)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    #[param]
    pub weight: Tensor,
    /// Row that stays zero and receives no gradient.
    pub padding_idx: Option<u32>,
}

impl Embedding {
    /// A table with N(0, 1) rows (the padding row zeroed).
    pub fn new(num: usize, dim: usize, padding_idx: Option<u32>, gen: &mut Generator, device: &Device) -> Self {
        let weight = Tensor::zeros(&[num, dim], device).requires_grad_();
        init::normal_(&weight, 0.0, 1.0, gen);
        if let Some(p) = padding_idx {
            let mut v = weight.to_vec();
            v[p as usize * dim..(p as usize + 1) * dim].iter_mut().for_each(|x| *x = 0.0);
            wgrad_autograd::no_grad(|| weight.assign(&Tensor::from_vec(&v, &[num, dim], device)));
        }
        Embedding { weight, padding_idx }
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Tensor {
        ids.embedding(&self.weight, self.padding_idx)
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Embedding({}, {})", s[0], s[1])
    }
}
