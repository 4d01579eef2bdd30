//! The sequence models learn tiny tasks end to end (on the CPU backend, where
//! a few hundred small steps take seconds): a GPT and an LSTM language model
//! memorise a periodic text and generate its continuation; a seq2seq model
//! with either attention scorer learns to reverse short sequences, decoded
//! greedily and by beam search.

use wgrad_autograd::{CrossEntropyOptions, Device, Tensor};
use wgrad_models::*;
use wgrad_nn::optim::{clip_grad_norm_, Adam, Optimizer};
use wgrad_nn::{Init, ModuleExt};

/// Inputs and next-token targets `[B, L]` cut from the periodic stream 0 1 2 3 0 1 2 3 ...
fn periodic(batch: usize, len: usize, dev: &Device) -> (Tensor, Tensor) {
    let x: Vec<u32> = (0..batch * len).map(|i| ((i % len + i / len) % 4) as u32).collect();
    let y: Vec<u32> = x.iter().map(|t| (t + 1) % 4).collect();
    (Tensor::from_u32(&x, &[batch, len], dev), Tensor::from_u32(&y, &[batch, len], dev))
}

#[test]
fn gpt_names_tying_and_learning() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let config = Gpt::builder(5, 8).layers(1).heads(2).width(16);
    let untied = config.build(&mut init);
    let tied = config.tie_weights(true).build(&mut init);
    assert_eq!(untied.num_parameters() - tied.num_parameters(), 5 * 16);
    let names: Vec<String> = untied.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "tok_emb.weight");
    assert_eq!(names[2], "blocks.0.self_attn.in_proj_weight");
    assert_eq!(names.last().unwrap(), "head.weight");

    for mut model in [untied, tied] {
        let (x, y) = periodic(4, 8, &dev);
        let mut opt = Adam::new(model.parameters(), 1e-2);
        let first = model.loss(&x, &y).item();
        for _ in 0..80 {
            let loss = model.loss(&x, &y);
            opt.zero_grad();
            loss.backward();
            clip_grad_norm_(&model.parameters(), 1.0);
            opt.step();
        }
        let last = model.loss(&x, &y).item();
        assert!(last < 0.05 && last < first / 10.0, "GPT loss {first} -> {last}");
        model.eval();
        let out = model.generate(&[2, 3], 10, &mut Sampler::new(Sampling::greedy(), 0), &dev);
        assert_eq!(out, [2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1], "continues the period past the context");
    }
}

#[test]
fn lstm_language_model_learns_and_generates() {
    let dev = Device::cpu();
    let mut model = RnnLm::builder(4).embed(8).hidden(16).layers(2).build(&mut Init::new(&dev, 1));
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[..3], ["embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0"]);
    let (x, y) = periodic(4, 8, &dev);
    let mut opt = Adam::new(model.parameters(), 2e-2);
    let loss = |m: &RnnLm| {
        let (logits, _) = m.forward_with_state(&x, None);
        logits.reshape(&[32, 4]).cross_entropy(&y.reshape(&[32]), &CrossEntropyOptions::default())
    };
    let first = loss(&model).item();
    for _ in 0..100 {
        let l = loss(&model);
        opt.zero_grad();
        l.backward();
        opt.step();
    }
    let last = loss(&model).item();
    assert!(last < 0.05, "LSTM LM loss {first} -> {last}");
    model.eval();
    let out = model.generate(&[1, 2], 6, &mut Sampler::new(Sampling::greedy(), 0), &dev);
    assert_eq!(out, [1, 2, 3, 0, 1, 2, 3, 0]);
}

/// Sources of 3 tokens from 3..=7 and targets BOS + reversed + EOS (BOS 1, EOS 2).
fn reverse_batch(n: usize, seed: u64, dev: &Device) -> (Tensor, Tensor, Tensor, Vec<Vec<u32>>) {
    let mut s = seed;
    let mut src = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..n {
        let seq: Vec<u32> = (0..3)
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                3 + ((s >> 33) % 5) as u32
            })
            .collect();
        src.extend(&seq);
        seqs.push(seq);
    }
    let tgt_in: Vec<u32> = seqs.iter().flat_map(|q| [1, q[2], q[1], q[0]]).collect();
    let tgt_out: Vec<u32> = seqs.iter().flat_map(|q| [q[2], q[1], q[0], 2]).collect();
    (
        Tensor::from_u32(&src, &[n, 3], dev),
        Tensor::from_u32(&tgt_in, &[n, 4], dev),
        Tensor::from_u32(&tgt_out, &[n, 4], dev),
        seqs,
    )
}

#[test]
fn seq2seq_learns_to_reverse_with_both_scorers() {
    let dev = Device::cpu();
    for attention in [AttentionScore::Additive, AttentionScore::Dot] {
        let model = Seq2Seq::builder(8, 8).embed(16).hidden(32).attention(attention).build(&mut Init::new(&dev, 2));
        let mut opt = Adam::new(model.parameters(), 1e-2);
        for step in 0..150 {
            let (src, tgt_in, tgt_out, _) = reverse_batch(32, step, &dev);
            let loss = model
                .logits(&src, None, &tgt_in)
                .reshape(&[128, 8])
                .cross_entropy(&tgt_out.reshape(&[128]), &CrossEntropyOptions::default());
            opt.zero_grad();
            loss.backward();
            clip_grad_norm_(&model.parameters(), 1.0);
            opt.step();
        }
        let (src, _, _, seqs) = reverse_batch(6, 999, &dev);
        let mut right = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let enc = model.encode(&src.narrow(0, i, 1), None);
            let greedy = greedy_search(&model.decoder(), enc.clone(), 1, 2, 6);
            let beams = beam_search(&model.decoder(), enc, 1, 2, 3, 6, 0.0);
            let want = vec![seq[2], seq[1], seq[0], 2];
            right += usize::from(greedy.tokens == want);
            assert_eq!(beams[0].tokens, want, "{attention:?}: beam search on {seq:?}");
            assert!(beams[0].log_prob >= greedy.log_prob - 1e-4, "beam is never worse than greedy");
        }
        assert!(right >= 5, "{attention:?}: greedy reversed {right}/6");
    }
}
