//! Cached decoding computes what the full recomputation does: a
//! Transformer layer (pre- and post-LN) fed its sequence in chunks through a
//! key/value cache gives the full causal pass's last positions, a GPT's
//! cached logits match its full logits, and `generate` with the cache picks
//! the same tokens as without, also after the window slides past the context.

use wgrad_autograd::Tensor;
use wgrad_gpu_core::testing::{assert_close, backends as devices};
use wgrad_models::*;
use wgrad_nn::{AttentionMask, Init, KvCache, ModuleExt, TransformerEncoderLayer};

#[test]
fn a_layer_fed_in_chunks_equals_the_causal_pass() {
    for dev in devices("a_layer_fed_in_chunks_equals_the_causal_pass") {
        for norm_first in [true, false] {
            let mut layer = TransformerEncoderLayer::builder(16, 4)
                .batch_first(true)
                .norm_first(norm_first)
                .build(&mut Init::new(&dev, 1));
            layer.eval();
            let x = Tensor::randn(&[2, 9, 16], 2, &dev);
            let full = layer.forward_masked(&x, &AttentionMask::causal()).to_vec();
            // Chunks of 4 (prefill), 1 (a decode step), then 4 (past > 0, T > 1).
            let mut cache = KvCache::new();
            let mut got = Vec::new();
            for (start, len) in [(0, 4), (4, 1), (5, 4)] {
                let y = layer.forward_cached(&x.narrow(1, start, len), &mut cache);
                got.push(y);
            }
            assert_eq!(cache.len(), 9);
            let got = Tensor::cat(&got.iter().collect::<Vec<_>>(), 1).to_vec();
            assert_close(&format!("norm_first {norm_first} on {}", dev.name()), &got, &full, 1e-4, 1e-5);
        }
    }
}

#[test]
fn cached_gpt_logits_and_generation_match_the_recomputing_path() {
    for dev in devices("cached_gpt_logits_and_generation_match_the_recomputing_path") {
        for tie_weights in [false, true] {
            let config = Gpt::builder(11, 12).layers(2).heads(2).width(16).tie_weights(tie_weights);
            let mut model = config.build(&mut Init::new(&dev, 3));
            model.eval();
            let tokens: Vec<u32> = (0..9).map(|i| (i * 7 + 3) % 11).collect();
            let full = model.logits(&Tensor::from_u32(&tokens, &[1, 9], &dev)).to_vec();
            let mut caches = vec![KvCache::new(); 2];
            let mut got = Vec::new();
            for (start, len) in [(0, 5), (5, 1), (6, 3)] {
                let ids = Tensor::from_u32(&tokens[start..start + len], &[1, len], &dev);
                got.extend(model.logits_cached(&ids, &mut caches).to_vec());
            }
            assert_close(&format!("logits, tied {tie_weights}, on {}", dev.name()), &got, &full, 1e-4, 1e-5);

            // 4 + 14 tokens pass the context of 12: the window slides.
            let greedy = || Sampler::new(Sampling::greedy(), 0);
            let cached = model.generate(&tokens[..4], 14, &mut greedy(), &dev);
            let uncached = model.generate_uncached(&tokens[..4], 14, &mut greedy(), &dev);
            assert_eq!(cached, uncached, "tied {tie_weights} on {}", dev.name());
            assert_eq!(cached.len(), 18);
        }
    }
}
