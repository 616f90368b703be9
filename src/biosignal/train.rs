//! In-memory sources of bio-signal batches for the training engine ([`crate::nn::trainer::Data`]):
//! [`InMemorySignals`] over windows held in memory and [`MixtureSignals`], a multimodal pool of
//! them. The models' engine adapters are [`crate::models::signal::Supervised`] and
//! [`crate::models::signal::Pretraining`]; the architecture comes from
//! [`crate::models::registry`].
use crate::models::objectives::SignalBatch;
use crate::nn::trainer::Data;
use anyhow::{bail, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Windows held in memory (CPU): train x [N, C, L] (+ labels [N]) and held-out ones.
/// Training batches draw `batch_size` windows uniformly with replacement and a mask seed from the
/// engine's RNG; evaluation batches are the held-out windows in order with seed = their start
/// index (fixed masks, so eval losses are comparable across steps).
pub struct InMemorySignals {
    pub train_x: Tensor,
    pub train_y: Option<Tensor>,
    pub eval_x: Tensor,
    pub eval_y: Option<Tensor>,
    /// BIOT channel-table offset of these windows.
    pub channel_offset: i64,
}

impl InMemorySignals {
    /// Checks shapes: x [N, C, L] float, y [N] int64 when given, train non-empty.
    pub fn new(
        train_x: Tensor,
        train_y: Option<Tensor>,
        eval_x: Tensor,
        eval_y: Option<Tensor>,
    ) -> Result<Self> {
        for (name, x, y) in [("train", &train_x, &train_y), ("eval", &eval_x, &eval_y)] {
            if x.dim() != 3 {
                bail!("{name} windows must be [N, C, L], got {:?}", x.size());
            }
            if let Some(y) = y {
                if y.size() != [x.size()[0]] || y.kind() != Kind::Int64 {
                    bail!(
                        "{name} labels must be int64 [{}], got {:?} {:?}",
                        x.size()[0],
                        y.kind(),
                        y.size()
                    );
                }
            }
        }
        if train_x.size()[0] == 0 {
            bail!("no training windows");
        }
        Ok(Self {
            train_x,
            train_y,
            eval_x,
            eval_y,
            channel_offset: 0,
        })
    }
}

impl InMemorySignals {
    /// Every channel as its own window: x [N, C, L] → [N·C, 1, L] (labels repeated per channel),
    /// for channel-independent models and mixtures of channel counts.
    pub fn into_single_channel(self) -> Self {
        let flat = |x: Tensor| {
            let (n, c, l) = x.size3().expect("checked in new");
            x.reshape([n * c, 1, l])
        };
        let rep =
            |y: Option<Tensor>, c: i64| y.map(|y| y.repeat_interleave_self_int(c, Some(0), None));
        let (ct, ce) = (self.train_x.size()[1], self.eval_x.size()[1]);
        Self {
            train_y: rep(self.train_y, ct),
            eval_y: rep(self.eval_y, ce),
            train_x: flat(self.train_x),
            eval_x: flat(self.eval_x),
            channel_offset: 0,
        }
    }
}

impl Data<SignalBatch> for InMemorySignals {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<SignalBatch> {
        let n = self.train_x.size()[0];
        let idx: Vec<i64> = (0..batch_size).map(|_| rng.gen_range(0..n)).collect();
        let idx = Tensor::from_slice(&idx);
        Ok(SignalBatch {
            x: self.train_x.index_select(0, &idx).to_device(device),
            labels: self
                .train_y
                .as_ref()
                .map(|y| y.index_select(0, &idx).to_device(device)),
            channel_offset: self.channel_offset,
            seed: rng.gen(),
        })
    }
    fn eval_len(&self) -> usize {
        self.eval_x.size()[0] as usize
    }
    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<SignalBatch> {
        if start + len > self.eval_len() {
            bail!(
                "eval windows {start}..{} beyond {}",
                start + len,
                self.eval_len()
            );
        }
        let (s, l) = (start as i64, len as i64);
        Ok(SignalBatch {
            x: self.eval_x.narrow(0, s, l).to_device(device),
            labels: self
                .eval_y
                .as_ref()
                .map(|y| y.narrow(0, s, l).to_device(device)),
            channel_offset: self.channel_offset,
            seed: start as u64,
        })
    }
}

/// Multimodal pretraining pool: several sources (modalities or datasets, each already resampled
/// to the model rate and window length, each with its own channel count and BIOT channel offset).
/// Each micro-batch comes whole from one source, drawn with probability ∝ `weights`, so channel
/// counts may differ between sources; the channel-independent CiTrus model treats every channel
/// as its own sequence either way. Evaluation runs over the sources' held-out windows in order.
pub struct MixtureSignals {
    pub sources: Vec<InMemorySignals>,
    pub weights: Vec<f64>,
}

impl MixtureSignals {
    pub fn new(sources: Vec<InMemorySignals>, weights: Vec<f64>) -> Result<Self> {
        if sources.is_empty() || sources.len() != weights.len() {
            bail!("{} sources with {} weights", sources.len(), weights.len());
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weights.iter().sum::<f64>() <= 0.0
        {
            bail!("mixture weights must be non-negative with a positive sum, got {weights:?}");
        }
        Ok(Self { sources, weights })
    }

    /// Source and local index of held-out window `i`.
    fn locate(&self, mut i: usize) -> Result<(&InMemorySignals, usize)> {
        for s in &self.sources {
            if i < s.eval_len() {
                return Ok((s, i));
            }
            i -= s.eval_len();
        }
        bail!(
            "held-out window {i} beyond the mixture's {}",
            self.eval_len()
        )
    }
}

impl Data<SignalBatch> for MixtureSignals {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<SignalBatch> {
        let total: f64 = self.weights.iter().sum();
        let mut u = rng.gen::<f64>() * total;
        let mut pick = self.sources.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            if u < *w {
                pick = i;
                break;
            }
            u -= w;
        }
        self.sources[pick].train_batch(rng, batch_size, device)
    }
    fn eval_len(&self) -> usize {
        self.sources.iter().map(|s| s.eval_len()).sum()
    }
    /// Held-out windows `start..start+len` in source order; a range across sources is joined,
    /// which needs equal channel counts (flatten with [`InMemorySignals::into_single_channel`]
    /// for a channel-independent model).
    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<SignalBatch> {
        let mut parts = Vec::new();
        let mut at = start;
        while at < start + len {
            let (s, i) = self.locate(at)?;
            let take = (s.eval_len() - i).min(start + len - at);
            parts.push(s.eval_batch(i, take, device)?);
            at += take;
        }
        let c = parts[0].x.size()[1];
        if parts
            .iter()
            .any(|p| p.x.size()[1] != c || p.channel_offset != parts[0].channel_offset)
        {
            bail!("held-out windows {start}..{} join sources with different channel counts or offsets: \
                   flatten them to single channels (into_single_channel) or evaluate sources separately", start + len);
        }
        let xs: Vec<&Tensor> = parts.iter().map(|p| &p.x).collect();
        let labels = match parts
            .iter()
            .map(|p| p.labels.as_ref())
            .collect::<Option<Vec<_>>>()
        {
            Some(ys) => Some(Tensor::cat(&ys, 0)),
            None => None,
        };
        Ok(SignalBatch {
            x: Tensor::cat(&xs, 0),
            labels,
            channel_offset: parts[0].channel_offset,
            seed: start as u64,
        })
    }
}
