//! The training engine on its own, with a model that is neither GPT nor VQ-VAE: a two-layer
//! MLP regressing a known teacher function. Covers the loop, evaluation, checkpoint and
//! bit-exact resume (through `fit` and through `Trainer::resume`), fp16 loss scaling, the
//! loss CSV, and frozen parameters.
use anyhow::Result;
use brainscale::nn::{self, Data, FitOptions, Loss, Model, Precision, TrainConfig, Trainer};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn as tnn, Device, Kind, Tensor};

static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MlpConfig {
    inputs: i64,
    hidden: i64,
    /// Dropout on the hidden layer in training (draws from libtorch's global RNG).
    #[serde(default)]
    dropout: f64,
}

/// y = w2 · tanh(w1 x + b1) + b2, computed in the engine's compute dtype.
struct Mlp {
    cfg: MlpConfig,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

struct Batch {
    x: Tensor,
    y: Tensor,
}

impl Model for Mlp {
    type Config = MlpConfig;
    type Batch = Batch;

    fn build(root: &tnn::Path, cfg: &MlpConfig) -> Result<Self> {
        let l1 = root / "l1";
        let l2 = root / "l2";
        Ok(Self {
            cfg: cfg.clone(),
            w1: l1.var(
                "weight",
                &[cfg.hidden, cfg.inputs],
                tnn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.5,
                },
            ),
            b1: l1.var("bias", &[cfg.hidden], tnn::Init::Const(0.0)),
            w2: l2.var(
                "weight",
                &[1, cfg.hidden],
                tnn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.2,
                },
            ),
            b2: l2.var("bias", &[1], tnn::Init::Const(0.0)),
        })
    }

    fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    fn loss(&self, b: &Batch, train: bool, kind: Kind) -> Result<Loss> {
        let h =
            b.x.to_kind(kind)
                .linear(&self.w1.to_kind(kind), Some(&self.b1.to_kind(kind)))
                .tanh()
                .dropout(self.cfg.dropout, train);
        let p = h.linear(&self.w2.to_kind(kind), Some(&self.b2.to_kind(kind)));
        let mse = (p.to_kind(Kind::Float) - &b.y).square().mean(Kind::Float);
        Ok(Loss {
            parts: vec![("rmse", mse.detach().sqrt())],
            total: mse,
        })
    }

    fn units(&self, b: &Batch) -> u64 {
        b.x.size()[0] as u64
    }
}

/// A teacher regression: y = tanh(x A) · c + 0.01 ε, x ~ N(0, I₄); 512 training and 128
/// held-out samples.
struct Teacher {
    x: Tensor,
    y: Tensor,
    n_train: i64,
}

fn teacher() -> Teacher {
    // The test's own draws take the engine's RNG lock, as the engine's do.
    let _g = nn::rng_turn();
    tch::manual_seed(42);
    let n = 640;
    let x = Tensor::randn([n, 4], (Kind::Float, Device::Cpu));
    let a = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let c = Tensor::from_slice(&[1.0f32, -0.7, 0.5]).view([3, 1]);
    let y =
        x.matmul(&a).tanh().matmul(&c) + Tensor::randn([n, 1], (Kind::Float, Device::Cpu)) * 0.01;
    Teacher { x, y, n_train: 512 }
}

impl Data<Batch> for Teacher {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<Batch> {
        let rows: Vec<i64> = (0..batch_size)
            .map(|_| rng.gen_range(0..self.n_train))
            .collect();
        let i = Tensor::from_slice(&rows);
        Ok(Batch {
            x: self.x.index_select(0, &i).to_device(device),
            y: self.y.index_select(0, &i).to_device(device),
        })
    }

    fn eval_len(&self) -> usize {
        (self.x.size()[0] - self.n_train) as usize
    }

    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<Batch> {
        let s = self.n_train + start as i64;
        Ok(Batch {
            x: self.x.narrow(0, s, len as i64).to_device(device),
            y: self.y.narrow(0, s, len as i64).to_device(device),
        })
    }
}

fn cfg() -> MlpConfig {
    MlpConfig {
        inputs: 4,
        hidden: 32,
        dropout: 0.0,
    }
}

fn tc(max_steps: u64) -> TrainConfig {
    TrainConfig {
        seed: 7,
        batch_size: 32,
        grad_accum: 2,
        max_steps,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup_steps: 10,
        weight_decay: 0.01,
        eval_every: 50,
        eval_samples: 128,
        checkpoint_every: 25,
        ..TrainConfig::default()
    }
}

#[test]
fn an_mlp_learns_a_known_regression_through_fit() {
    let _g = lock();
    let data = teacher();
    let out = tempfile::tempdir().unwrap();
    let mut t = Trainer::<Mlp>::new(&cfg(), &tc(300), Device::Cpu).unwrap();
    let start = t.eval_loss(&data).unwrap().unwrap();
    let s = nn::fit(
        &mut t,
        &data,
        out.path(),
        &FitOptions {
            flops_per_unit: 1.0,
            ..FitOptions::default()
        },
    )
    .unwrap();
    let end = s.final_eval_loss.unwrap();
    // The targets have variance ~0.5 and noise variance 1e-4: a fitted MLP gets far below both.
    assert!(start > 0.1, "initial held-out MSE {start}");
    assert!(
        end < 0.01 && end < start / 20.0,
        "held-out MSE {start} → {end}"
    );
    assert_eq!((s.steps, s.tokens), (300, 300 * 64));
    // loss.csv: one row per step, the logged part (rmse = sqrt of the step's mean MSE) beside it.
    let rows = nn::read_loss_csv(&out.path().join("loss.csv"), u64::MAX).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=300).collect::<Vec<_>>()
    );
    let r = &rows[299];
    assert_eq!(r.parts[0].0, "rmse");
    assert!((r.parts[0].1.powi(2) - r.train_loss).abs() < 0.5 * r.train_loss + 1e-6);
    assert_eq!(rows.iter().filter(|r| r.eval_loss.is_some()).count(), 6);
    // The schedule: warmup to lr, cosine to min_lr.
    assert!((rows[9].lr - 1e-2).abs() < 1e-12 && (rows[299].lr - 1e-3).abs() < 1e-4);
}

#[test]
fn fit_killed_midway_resumes_bit_for_bit() {
    let _g = lock();
    let data = teacher();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut straight = Trainer::<Mlp>::new(&cfg(), &tc(60), Device::Cpu).unwrap();
    nn::fit(&mut straight, &data, a.path(), &FitOptions::default()).unwrap();
    // "Killed" after 35 of 60 steps: the last checkpoint is step 25 (checkpoint_every 25).
    let mut part = Trainer::<Mlp>::new(&cfg(), &tc(60), Device::Cpu).unwrap();
    for _ in 0..25 {
        part.train_step(&data).unwrap();
    }
    part.save(b.path()).unwrap();
    for _ in 0..10 {
        part.train_step(&data).unwrap(); // lost work: never saved
    }
    let mut resumed =
        Trainer::<Mlp>::open(b.path(), &cfg(), &tc(60), Device::Cpu, |_, _| Ok(())).unwrap();
    assert_eq!(resumed.step, 25);
    nn::fit(&mut resumed, &data, b.path(), &FitOptions::default()).unwrap();
    for (n, w) in straight.vs.variables() {
        assert!(
            w.equal(&resumed.vs.variables()[&n]),
            "{n} differs after resume"
        );
    }
    let la = nn::read_loss_csv(&a.path().join("loss.csv"), u64::MAX).unwrap();
    let lb = nn::read_loss_csv(&b.path().join("loss.csv"), u64::MAX).unwrap();
    let tail = |r: &[nn::LossRow]| {
        r.iter()
            .filter(|r| r.step > 25)
            .map(|r| r.train_loss)
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(&la), tail(&lb));
    // Another model config or seed in the same folder is refused.
    let other = MlpConfig {
        hidden: 16,
        ..cfg()
    };
    assert!(Trainer::<Mlp>::open(b.path(), &other, &tc(60), Device::Cpu, |_, _| Ok(())).is_err());
    let reseeded = TrainConfig { seed: 8, ..tc(60) };
    assert!(Trainer::<Mlp>::open(b.path(), &cfg(), &reseeded, Device::Cpu, |_, _| Ok(())).is_err());
    // A fresh trainer at step 25 would not reproduce the resumed run: the state was restored.
    let mut fresh = Trainer::<Mlp>::new(&cfg(), &tc(60), Device::Cpu).unwrap();
    fresh.step = 25;
    assert_ne!(fresh.train_step(&data).unwrap().loss, lb[25].train_loss);
}

#[test]
fn fp16_overflow_skips_the_step_and_halves_the_scale() {
    let _g = lock();
    let data = teacher();
    let c = TrainConfig {
        precision: Precision::Fp16,
        loss_scale: 2f64.powi(40),
        ..tc(100)
    };
    let mut t = Trainer::<Mlp>::new(&cfg(), &c, Device::Cpu).unwrap();
    let before: Vec<(String, Tensor)> =
        t.vs.variables()
            .into_iter()
            .map(|(n, v)| (n, v.copy()))
            .collect();
    let s = t.train_step(&data).unwrap();
    assert!(s.skipped && !s.grad_norm.is_finite(), "{s:?}");
    assert_eq!(s.loss_scale, 2f64.powi(39));
    for (n, v) in &before {
        assert!(
            v.equal(&t.vs.variables()[n]),
            "{n} changed on a skipped step"
        );
    }
    let mut k = 1;
    let applied = loop {
        let s = t.train_step(&data).unwrap();
        if !s.skipped {
            break s;
        }
        k += 1;
        assert_eq!(s.loss_scale, 2f64.powi(40 - k));
        assert!(k < 40, "the scaler never recovered");
    };
    assert!(applied.grad_norm.is_finite() && applied.loss.is_finite());
    assert!(before.iter().any(|(n, v)| !v.equal(&t.vs.variables()[n])));
    // The scale survives a checkpoint.
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path()).unwrap();
    let r = Trainer::<Mlp>::resume(dir.path(), None, Device::Cpu).unwrap();
    assert_eq!(r.scaler, t.scaler);
}

#[test]
fn frozen_parameters_stay_put_and_the_rest_train() {
    let _g = lock();
    let data = teacher();
    let mut t = Trainer::<Mlp>::with_init(&cfg(), &tc(20), Device::Cpu, |vs, _| {
        for (n, v) in vs.variables() {
            if n.starts_with("l1.") {
                let _ = v.set_requires_grad(false);
            }
        }
        Ok(())
    })
    .unwrap();
    let before: Vec<(String, Tensor)> =
        t.vs.variables()
            .into_iter()
            .map(|(n, v)| (n, v.copy()))
            .collect();
    for _ in 0..20 {
        t.train_step(&data).unwrap();
    }
    for (n, v) in &before {
        let same = v.equal(&t.vs.variables()[n]);
        assert_eq!(
            same,
            n.starts_with("l1."),
            "{n}: frozen = {}",
            n.starts_with("l1.")
        );
    }
}

#[test]
fn seeded_trainers_in_parallel_threads_reproduce() {
    // No test-level lock here on purpose: the engine's own RNG lock must keep each seed and
    // the draws after it (initial weights, every step's dropout masks) together while several
    // trainers initialise and step at once; the lock is let go before each backward pass, so
    // this also checks that nothing after the forward draws. One and two micro-batches a step.
    tch::set_num_threads(1); // as every test here (intra-op threads change sums' order)
    for (dropout, grad_accum) in [(0.0, 2), (0.3, 1), (0.3, 2)] {
        let run = || {
            let data = teacher();
            let model = MlpConfig { dropout, ..cfg() };
            let train = TrainConfig {
                grad_accum,
                ..tc(10)
            };
            let mut t = Trainer::<Mlp>::new(&model, &train, Device::Cpu).unwrap();
            let mut bits = Vec::new();
            for _ in 0..10 {
                bits.push(t.train_step(&data).unwrap().loss.to_bits());
            }
            bits.push(t.eval_loss(&data).unwrap().unwrap().to_bits());
            bits
        };
        let serial = run();
        for _ in 0..3 {
            let got: Vec<Vec<u64>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4).map(|_| s.spawn(run)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(
                got.iter().all(|b| *b == serial),
                "dropout {dropout}, grad_accum {grad_accum}: {got:?} vs {serial:?}"
            );
        }
    }
}
