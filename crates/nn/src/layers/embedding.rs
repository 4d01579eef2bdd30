//! Lookup tables.

use wgrad_autograd::Tensor;

use crate::construction::Init;
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

/// Options of an [`Embedding`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingBuilder {
    num_embeddings: usize,
    embedding_dim: usize,
    padding_idx: Option<u32>,
}

impl Embedding {
    /// `nn.Embedding(num_embeddings, embedding_dim)`.
    pub fn builder(num_embeddings: usize, embedding_dim: usize) -> EmbeddingBuilder {
        EmbeddingBuilder { num_embeddings, embedding_dim, padding_idx: None }
    }
}

impl EmbeddingBuilder {
    /// A row that stays zero and gets no gradient (PyTorch's `padding_idx`).
    pub fn padding_idx(mut self, idx: u32) -> Self {
        self.padding_idx = Some(idx);
        self
    }

    /// The table with N(0, 1) rows, the padding row zeroed.
    ///
    /// # Panics
    /// When the padding row is past the table.
    pub fn build(self, init: &mut Init) -> Embedding {
        let (num, dim) = (self.num_embeddings, self.embedding_dim);
        if let Some(p) = self.padding_idx {
            assert!((p as usize) < num, "Embedding: padding_idx {p} is past the table's {num} rows");
        }
        let weight = Tensor::zeros(&[num, dim], init.device()).requires_grad_();
        init::normal_(&weight, 0.0, 1.0, init.generator());
        if let Some(p) = self.padding_idx {
            let mut v = weight.to_vec();
            v[p as usize * dim..(p as usize + 1) * dim].iter_mut().for_each(|x| *x = 0.0);
            wgrad_autograd::no_grad(|| weight.assign(&Tensor::from_vec(&v, &[num, dim], init.device())));
        }
        Embedding { weight, padding_idx: self.padding_idx }
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
