//! `--resume` for the text examples at the library level: a GPT and an LSTM
//! language model with dropout, trained a few steps, checkpointed to a file,
//! rebuilt from a *different* seed and resumed, end bit-identical to an
//! uninterrupted run of the same total steps on the CPU backend. Everything
//! that differs must therefore come from the checkpoint: weights, optimizer
//! and schedule state, the dropout streams (`TrainingCheckpoint::capture`
//! saves every module's), the batch sampler and the carried LSTM state.

use std::path::PathBuf;

use wgrad::autograd::{CrossEntropyOptions, HostRng};
use wgrad::data::text::{windows, Streams};
use wgrad::models::{Gpt, RnnLm};
use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{Adam, AdamW, Optimizer};
use wgrad::nn::schedule::{CosineAnnealingLR, LinearWarmup, LrScheduler};
use wgrad::nn::train::TruncatedBptt;
use wgrad::prelude::*;

const VOCAB: usize = 11;

fn corpus() -> Vec<u32> {
    (0..600u32).map(|i| (i * 7 + i / 3) % VOCAB as u32).collect()
}

fn bits(model: &(dyn Module + 'static)) -> Vec<u32> {
    model.parameters().iter().flat_map(|p| p.to_vec()).map(f32::to_bits).collect()
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgrad-text-resume-{}-{name}.safetensors", std::process::id()))
}

/// The GPT example's loop: random windows from a host stream, AdamW, warm-up then cosine.
struct GptRun {
    model: Gpt,
    opt: AdamW,
    sched: LinearWarmup<CosineAnnealingLR>,
    rng: HostRng,
}

impl GptRun {
    fn new(seed: u64, dev: &Device) -> Self {
        let model = Gpt::builder(VOCAB, 8).layers(1).heads(2).width(16).dropout(0.25).build(&mut Init::new(dev, seed));
        let mut opt = AdamW::new(model.parameters(), 3e-3);
        let cosine = CosineAnnealingLR::new(&mut opt, 10, 3e-4);
        let sched = LinearWarmup::new(&mut opt, cosine, 2, 0.1);
        GptRun { model, opt, sched, rng: HostRng::new(seed ^ 0x5EED) }
    }

    fn steps(&mut self, n: usize, ids: &[u32], dev: &Device) {
        self.model.train();
        for _ in 0..n {
            let starts: Vec<usize> = (0..4).map(|_| (self.rng.next_u64() % (ids.len() as u64 - 9)) as usize).collect();
            let (x, y) = windows(ids, &starts, 8, dev);
            self.model.loss(&x, &y).backward();
            self.opt.step();
            self.opt.zero_grad();
            self.sched.step(&mut self.opt);
        }
    }

    fn checkpoint(&self) -> TrainingCheckpoint {
        let mut ck = TrainingCheckpoint::capture(&self.model, &self.opt);
        ck.scheduler = self.sched.state_dict();
        // A HostRng's whole state is one u64: kept as a generator's seed.
        ck.rng.insert("batches".into(), Generator { seed: self.rng.0, offset: 0 });
        ck
    }

    fn restore(&mut self, ck: &TrainingCheckpoint) {
        ck.restore(&self.model, &mut self.opt).unwrap();
        self.sched.load_state_dict(&ck.scheduler).unwrap();
        self.rng = HostRng(ck.rng["batches"].seed);
    }
}

/// The LSTM example's loop: parallel streams in chunks, state carried across them.
struct LstmRun {
    model: RnnLm,
    opt: Adam,
    tbptt: TruncatedBptt,
    step: usize,
}

impl LstmRun {
    fn new(seed: u64, dev: &Device) -> Self {
        let model = RnnLm::builder(VOCAB).embed(8).hidden(16).layers(2).dropout(0.3).build(&mut Init::new(dev, seed));
        let opt = Adam::new(model.parameters(), 3e-3);
        LstmRun { model, opt, tbptt: TruncatedBptt::new(), step: 0 }
    }

    fn steps(&mut self, n: usize, streams: &Streams, dev: &Device) {
        self.model.train();
        for _ in 0..n {
            let k = self.step % streams.chunks(6);
            if k == 0 {
                self.tbptt.reset();
            }
            let (x, y) = streams.chunk(k, 6, dev);
            let (logits, state) = self.model.forward_with_state(&x, self.tbptt.state());
            self.tbptt.carry(&state);
            let m = y.numel();
            logits.reshape(&[m, VOCAB]).cross_entropy(&y.reshape(&[m]), &CrossEntropyOptions::default()).backward();
            self.opt.step();
            self.opt.zero_grad();
            self.step += 1;
        }
    }

    fn checkpoint(&self) -> TrainingCheckpoint {
        let mut ck = TrainingCheckpoint::capture(&self.model, &self.opt);
        ck.step = self.step as u64;
        ck.extra = self.tbptt.state_dict();
        ck
    }

    fn restore(&mut self, ck: &TrainingCheckpoint) {
        ck.restore(&self.model, &mut self.opt).unwrap();
        self.step = ck.step as usize;
        self.tbptt.load_state_dict(&ck.extra);
    }
}

/// Saves `ck` and loads it back, so the test covers the file format too.
fn round_trip(ck: &TrainingCheckpoint, name: &str, dev: &Device) -> TrainingCheckpoint {
    let path = temp_file(name);
    ck.save(&path).unwrap();
    let back = TrainingCheckpoint::load(&path, dev).unwrap();
    std::fs::remove_file(&path).unwrap();
    back
}

fn without_model_streams(mut ck: TrainingCheckpoint) -> TrainingCheckpoint {
    ck.rng.retain(|k, _| !k.starts_with("model"));
    ck
}

#[test]
fn resumed_gpt_with_dropout_continues_bit_identically() {
    let dev = Device::cpu();
    let ids = corpus();
    let mut whole = GptRun::new(1, &dev);
    whole.steps(6, &ids, &dev);

    let mut first = GptRun::new(1, &dev);
    first.steps(3, &ids, &dev);
    let ck = round_trip(&first.checkpoint(), "gpt", &dev);
    assert!(
        ck.rng.keys().any(|k| k.starts_with("model.blocks.0.")),
        "attention/block dropout streams saved: {:?}",
        ck.rng
    );
    let mut resumed = GptRun::new(2, &dev);
    resumed.restore(&ck);
    resumed.steps(3, &ids, &dev);
    assert_eq!(bits(&resumed.model), bits(&whole.model), "resumed GPT differs from the uninterrupted run");

    // The streams matter: resuming without them draws other dropout masks.
    let mut blind = GptRun::new(2, &dev);
    blind.restore(&without_model_streams(ck));
    blind.steps(3, &ids, &dev);
    assert_ne!(bits(&blind.model), bits(&whole.model));
}

#[test]
fn resumed_lstm_with_dropout_and_carried_state_continues_bit_identically() {
    let dev = Device::cpu();
    let streams = Streams::new(&corpus(), 4);
    assert!(streams.chunks(6) > 8, "the resume point must fall mid-pass, with a carried state");
    let mut whole = LstmRun::new(1, &dev);
    whole.steps(8, &streams, &dev);

    let mut first = LstmRun::new(1, &dev);
    first.steps(4, &streams, &dev);
    let ck = round_trip(&first.checkpoint(), "lstm", &dev);
    assert!(ck.extra.tensors.contains_key("c"), "the LSTM cell state is saved");
    assert!(ck.rng.contains_key("model.rnn") && ck.rng.contains_key("model.drop"), "{:?}", ck.rng);
    let mut resumed = LstmRun::new(2, &dev);
    resumed.restore(&ck);
    resumed.steps(4, &streams, &dev);
    assert_eq!(bits(&resumed.model), bits(&whole.model), "resumed LSTM differs from the uninterrupted run");

    // Without the carried state the next chunk starts from zeros: a different run.
    let mut stateless = LstmRun::new(2, &dev);
    let mut ck_zero = ck.clone();
    ck_zero.extra = Default::default();
    stateless.restore(&ck_zero);
    stateless.steps(4, &streams, &dev);
    assert_ne!(bits(&stateless.model), bits(&whole.model));
}
