//! Random draws inside a compiled step ([`CompiledStep`](crate::CompiledStep)).
//!
//! A draw's key and first counter (a dropout mask's) change every step, so
//! a launch that carried them in its parameters would make every recording
//! of the step differ, and the step would never be replayed. While a
//! compiled step records a step it was given the generators of
//! ([`CompiledStep::run_with_streams`](crate::CompiledStep::run_with_streams)),
//! each draw from one of them takes the next row of the compiled step's
//! device table instead: the row is written with the draw's seed and offset
//! outside the recording, and the step notes which generator the draw came
//! from and how far past that generator's position at the start of the step.
//! The launches read the same rows every step. Before each replay the
//! compiled step writes every row from the generators' current positions
//! and advances each generator by what the recorded step consumed, so a
//! replay draws exactly what running the step would have drawn (PyTorch's
//! CUDA graphs keep their Philox offsets the same way).

use std::cell::RefCell;
use std::sync::Mutex;

use wgrad_gpu_core::ops::random::Counter;
use wgrad_gpu_core::Buffer;

use crate::{Device, Generator, Result};

/// Rows a compiled step's table starts with; a step that draws more grows
/// it (and records once more).
const FIRST_ROWS: usize = 64;

/// One draw of a recorded step: from the `stream`-th generator, `rel`
/// counter blocks past where it stood when the step began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Draw {
    stream: usize,
    rel: u64,
}

/// What a recorded step drew: which generators (by address), each draw,
/// and how far each generator advanced over the step.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Draws {
    streams: Vec<usize>,
    draws: Vec<Draw>,
    advanced: Vec<u64>,
}

impl Draws {
    /// Why two recordings' draws differ, if they do.
    pub fn differs_from(&self, earlier: &Draws) -> Option<String> {
        (self != earlier).then(|| {
            format!(
                "random draws differ ({} draws advancing the generators by {:?}, then {} advancing them by {:?})",
                earlier.draws.len(),
                earlier.advanced,
                self.draws.len(),
                self.advanced
            )
        })
    }

    /// Writes the table rows a replay reads from the generators' current
    /// positions, then advances each generator past the step's draws.
    /// Returns the positions before, for [`undo`](Self::undo).
    ///
    /// # Errors
    /// When `streams` are not the generators the step was recorded with
    /// (the caller records afresh), or on a device error.
    pub fn prepare_replay(&self, table: &Table, streams: &[&Mutex<Generator>]) -> Result<Vec<u64>> {
        let mut gens: Vec<_> = streams.iter().map(|m| m.lock().unwrap()).collect();
        if gens.iter().map(|g| address(g)).ne(self.streams.iter().copied()) {
            return Err(crate::Error::invalid(
                "CompiledStep",
                "the step's generators are not those it was recorded with",
            ));
        }
        let before = gens.iter().map(|g| g.offset).collect();
        if !self.draws.is_empty() {
            let words: Vec<u32> = self
                .draws
                .iter()
                .flat_map(|d| row_words(gens[d.stream].seed, gens[d.stream].offset.wrapping_add(d.rel)))
                .collect();
            let buffer = table.buffer.as_ref().expect("a table was made for the recording");
            buffer.write_unrecorded(0, &le_bytes(&words))?;
        }
        for (g, by) in gens.iter_mut().zip(&self.advanced) {
            g.offset = g.offset.wrapping_add(*by);
        }
        Ok(before)
    }

    /// Puts the generators back where [`prepare_replay`](Self::prepare_replay)
    /// found them (the replay was refused).
    pub fn undo(&self, streams: &[&Mutex<Generator>], before: &[u64]) {
        for (m, at) in streams.iter().zip(before) {
            m.lock().unwrap().offset = *at;
        }
    }
}

/// A compiled step's device table of draw counters, 16 bytes a row
/// (`[seed lo, seed hi, offset lo, offset hi]`).
#[derive(Default)]
pub(crate) struct Table {
    buffer: Option<Buffer>,
    rows: usize,
}

/// The recording in progress on this thread.
struct Active {
    streams: Vec<(usize, u64)>,
    table: Buffer,
    rows: usize,
    draws: Vec<Draw>,
    wanted: usize,
    refused: Option<String>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

fn address(g: &Generator) -> usize {
    g as *const Generator as usize
}

fn le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn row_words(seed: u64, offset: u64) -> [u32; 4] {
    [seed as u32, (seed >> 32) as u32, offset as u32, (offset >> 32) as u32]
}

/// Where a draw reads its seed and first counter (see [`source`]).
pub(crate) enum Source {
    /// The values themselves.
    Value(u64, u64),
    /// A row of a compiled step's table.
    Row(Buffer, usize),
}

impl Source {
    /// As gpu-core's random ops take it.
    pub fn counter(&self) -> Counter<'_> {
        match self {
            Source::Value(seed, offset) => Counter::Value { seed: *seed, offset: *offset },
            Source::Row(table, row) => Counter::Row { table, row: *row },
        }
    }
}

/// Where a draw from `gen` at counter `offset` reads its seed and offset:
/// the values themselves outside a compiled step's recording, else the
/// next row of its table (written here). A draw from a generator the
/// compiled step was not given is drawn by value and refuses the recording.
pub(crate) fn source(gen: &Generator, offset: u64) -> Source {
    let by_value = Source::Value(gen.seed, offset);
    ACTIVE.with_borrow_mut(|active| {
        let Some(a) = active.as_mut().filter(|a| a.refused.is_none()) else { return by_value };
        let Some(stream) = a.streams.iter().position(|(p, _)| *p == address(gen)) else {
            a.refused = Some(
                "the step draws random numbers from a generator it was not given (CompiledStep::run_with_streams)"
                    .into(),
            );
            return by_value;
        };
        let row = a.draws.len();
        a.wanted += 1;
        if row >= a.rows {
            // By value: this recording differs from the next, which has a
            // larger table (`recording`).
            return by_value;
        }
        if let Err(e) = a.table.write_unrecorded(row as u64 * 16, &le_bytes(&row_words(gen.seed, offset))) {
            a.refused = Some(format!("writing a random draw's counter: {e}"));
            return by_value;
        }
        a.draws.push(Draw { stream, rel: offset.wrapping_sub(a.streams[stream].1) });
        Source::Row(a.table.clone(), row)
    })
}

/// Runs `f` (the step, inside the device's recording) with draws from
/// `streams` taken from `table`'s rows. Returns `f`'s result and what it
/// drew, or why its draws cannot be replayed.
pub(crate) fn recording<T>(
    table: &mut Table,
    device: &Device,
    streams: &[&Mutex<Generator>],
    f: impl FnOnce() -> T,
) -> Result<(T, std::result::Result<Draws, String>)> {
    if table.buffer.is_none() {
        table.rows = table.rows.max(FIRST_ROWS);
        table.buffer = Some(Buffer::alloc(device, table.rows as u64 * 16)?);
    }
    let starts: Vec<(usize, u64)> =
        streams.iter().map(|m| m.lock().unwrap()).map(|g| (address(&g), g.offset)).collect();
    let active = Active {
        streams: starts.clone(),
        table: table.buffer.clone().expect("made above"),
        rows: table.rows,
        draws: Vec::new(),
        wanted: 0,
        refused: None,
    };
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            ACTIVE.with_borrow_mut(|a| *a = None);
        }
    }
    ACTIVE.with_borrow_mut(|a| *a = Some(active));
    let _clear = Clear;
    let out = f();
    let a = ACTIVE.with_borrow_mut(Option::take).expect("set above");
    if a.wanted > a.rows {
        table.rows = a.wanted.next_power_of_two();
        table.buffer = None;
    }
    if let Some(why) = a.refused {
        return Ok((out, Err(why)));
    }
    let advanced = streams.iter().zip(&starts).map(|(m, (_, at))| m.lock().unwrap().offset.wrapping_sub(*at)).collect();
    Ok((out, Ok(Draws { streams: starts.iter().map(|(p, _)| *p).collect(), draws: a.draws, advanced })))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use crate::{CompiledStep, Generator, Tensor};

    /// A step of `draws` dropout masks and a normal draw from one generator,
    /// `steps` times, compiled or not: its outputs' bits and the
    /// generator's final position, and the replays.
    fn run(dev: &crate::Device, compiled: bool, draws: usize, steps: usize) -> (Vec<Vec<u32>>, u64, u64) {
        let gen = Mutex::new(Generator::new(17));
        let mut step = CompiledStep::new(Vec::new());
        let mut outs = Vec::new();
        // Read by the step; replaced at step 5, which makes that step's
        // replay refused (its buffer freed): the step then runs and draws.
        let mut shift = Tensor::full(&[5], 0.5, dev);
        for i in 0..steps {
            if i == 5 {
                shift = Tensor::full(&[5], 0.5, dev);
            }
            let x = Tensor::full(&[5], 1.0 + i as f32, dev);
            let body = |x: &[Tensor]| {
                let mut y = &x[0] + &shift;
                for _ in 0..draws {
                    y = y.dropout(0.25, true, &mut gen.lock().unwrap()).add_scalar(1.0);
                }
                vec![&y + &gen.lock().unwrap().normal(&[5], 0.0, 1.0, dev)]
            };
            let y = if compiled { step.run_with_streams(0, &[&x], &[&gen], body).unwrap() } else { body(&[x]) };
            outs.push(y[0].to_vec().iter().map(|v| v.to_bits()).collect());
        }
        let offset = gen.lock().unwrap().offset;
        (outs, offset, step.replays())
    }

    /// More draws than the table's first rows (it grows) and fewer: the
    /// replays draw what eager steps draw, a refused replay leaves the
    /// generator for the step it runs instead, and the generator ends where
    /// it would have.
    #[test]
    fn replayed_draws_are_the_eager_draws() {
        let Some(dev) = wgrad_gpu_core::testing::fresh_gpu_or_skip("replayed_draws_are_the_eager_draws") else {
            return;
        };
        for draws in [3, super::FIRST_ROWS + 6] {
            let (eager, at, _) = run(&dev, false, draws, 12);
            let (compiled, at_compiled, replays) = run(&dev, true, draws, 12);
            assert_eq!(compiled, eager, "{draws} draws: the replays draw other numbers");
            assert_eq!(at_compiled, at, "{draws} draws: the generator ends elsewhere");
            assert!(replays >= 5, "{draws} draws: {replays} of 12 steps replayed");
        }
    }
}
