//! GPT-2 prior and its training loop, on CPU at tiny sizes.
use brainscale::models::gpt::{Gpt, GptConfig, PosEmbedding, Precision};
use brainscale::models::hf;
use brainscale::models::ModelConfig;
use brainscale::nn::{LossScaler, TrainConfig};

/// The engine's trainer with the GPT-2 prior plugged in.
type Trainer = brainscale::nn::Trainer<Gpt>;
use tch::{nn, Device, Kind, Tensor};

/// libtorch's RNG (weight init, dropout) is process-global and tests run on parallel threads:
/// every test holds this lock so none reseeds or draws from the RNG under another.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the RNG lock; tiny ops run fastest on one libtorch thread (the test machine is shared).
fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny(pos: PosEmbedding, tie: bool) -> GptConfig {
    GptConfig {
        name: "tiny".into(),
        d_model: 32,
        n_layer: 2,
        n_head: 4,
        ctx: 24,
        vocab: 16,
        dropout: 0.0,
        attn_dropout: 0.0,
        pos,
        latent_shape: (pos == PosEmbedding::Factorized).then_some([2, 3, 4]),
        tie_weights: tie,
    }
}

fn numel(vs: &nn::VarStore) -> u64 {
    vs.variables().values().map(|t| t.numel() as u64).sum()
}

#[test]
fn param_counts_match_the_built_model() {
    let _rng = lock();
    for (pos, tie) in [
        (PosEmbedding::Learned, true),
        (PosEmbedding::Learned, false),
        (PosEmbedding::Factorized, true),
    ] {
        let cfg = tiny(pos, tie);
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = Gpt::new(&vs.root(), &cfg).unwrap();
        let pc = cfg.param_counts();
        assert_eq!(pc.total, numel(&vs), "{pos:?} tie={tie}");
        let emb: u64 = vs
            .variables()
            .iter()
            .filter(|(n, _)| n.starts_with("wte") || n.starts_with("wpe"))
            .map(|(_, t)| t.numel() as u64)
            .sum();
        assert_eq!(pc.non_embedding, pc.total - emb);
        let head = (cfg.vocab * cfg.d_model) as u64;
        assert_eq!(pc.matmul, pc.non_embedding + if tie { head } else { 0 });
    }
    // GPT-2 small (vocab 50257, ctx 1024): the well-known 124,439,808 parameters.
    let gpt2 = GptConfig {
        d_model: 768,
        n_layer: 12,
        n_head: 12,
        ctx: 1024,
        vocab: 50257,
        ..tiny(PosEmbedding::Learned, true)
    };
    assert_eq!(gpt2.param_counts().total, 124_439_808);
}

#[test]
fn shapes_of_logits_and_hidden_states() {
    let _rng = lock();
    tch::manual_seed(0);
    let cfg = tiny(PosEmbedding::Factorized, true);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Gpt::new(&vs.root(), &cfg).unwrap();
    let idx = Tensor::randint(cfg.vocab, [3, 24], (Kind::Int64, Device::Cpu));
    let logits = m.forward(&idx, false, Kind::Float).unwrap();
    assert_eq!(logits.size(), vec![3, 24, 16]);
    let (_, hs) = m.trunk(&idx, false, Kind::Float, &[0, 2, 1]).unwrap();
    assert_eq!(hs.len(), 3);
    for h in &hs {
        assert_eq!(h.size(), vec![3, 24, 32]);
    }
    // Bad inputs are errors, not panics.
    assert!(m
        .trunk(&idx, false, Kind::Float, &[3])
        .unwrap_err()
        .to_string()
        .contains("layer 3"));
    let long = Tensor::zeros([1, 25], (Kind::Int64, Device::Cpu));
    assert!(m
        .forward(&long, false, Kind::Float)
        .unwrap_err()
        .to_string()
        .contains("ctx"));
    let oob = Tensor::full([1, 4], 16, (Kind::Int64, Device::Cpu));
    assert!(m
        .forward(&oob, false, Kind::Float)
        .unwrap_err()
        .to_string()
        .contains("token ids"));
}

#[test]
fn a_future_token_cannot_change_a_past_logit() {
    let _rng = lock();
    tch::manual_seed(1);
    for pos in [PosEmbedding::Learned, PosEmbedding::Factorized] {
        let cfg = tiny(pos, true);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Gpt::new(&vs.root(), &cfg).unwrap();
        let idx = Tensor::randint(cfg.vocab, [2, 24], (Kind::Int64, Device::Cpu));
        let j = 13;
        let changed = idx.copy();
        let _ = changed
            .get(0)
            .get(j)
            .fill_((idx.get(0).get(j).int64_value(&[]) + 1) % cfg.vocab);
        let a = m.forward(&idx, false, Kind::Float).unwrap();
        let b = m.forward(&changed, false, Kind::Float).unwrap();
        let past = (a.narrow(1, 0, j) - b.narrow(1, 0, j))
            .abs()
            .max()
            .double_value(&[]);
        let future = (a.get(0).narrow(0, j, 24 - j) - b.get(0).narrow(0, j, 24 - j))
            .abs()
            .max()
            .double_value(&[]);
        assert!(past < 1e-6, "{pos:?}: past logits moved by {past}");
        assert!(
            future > 1e-4,
            "{pos:?}: the changed token had no effect ({future})"
        );
        // The other sequence of the batch is untouched everywhere.
        assert!((a.get(1) - b.get(1)).abs().max().double_value(&[]) < 1e-6);
    }
}

fn tiny_data(n: i64, l: i64, vocab: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randint(vocab, [n, l], (Kind::Int64, Device::Cpu))
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        seed: 7,
        batch_size: 4,
        max_steps: 300,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup_steps: 10,
        weight_decay: 0.0,
        eval_samples: 16,
        ..TrainConfig::default()
    }
}

#[test]
fn a_tiny_model_overfits_a_tiny_token_set() {
    let _rng = lock();
    let cfg = tiny(PosEmbedding::Learned, true);
    // 4 random sequences of 17 tokens whose first tokens differ: every next token is
    // determined by the prefix, so the achievable loss is 0.
    let data = tiny_data(4, 17, cfg.vocab, 3);
    for (i, first) in [0i64, 5, 9, 12].iter().enumerate() {
        let _ = data.get(i as i64).get(0).fill_(*first);
    }
    let mut t = Trainer::new(&cfg, &train_cfg(), Device::Cpu).unwrap();
    let start = t.eval_loss(&data).unwrap().unwrap();
    assert!(
        (start - (16f64).ln()).abs() < 0.3,
        "initial loss {start} should be near ln 16"
    );
    for _ in 0..300 {
        t.train_step(&data).unwrap();
    }
    let end = t.eval_loss(&data).unwrap().unwrap();
    assert!(end < 0.05, "loss after 300 steps {end} (from {start})");
}

#[test]
fn checkpoint_and_resume_give_the_identical_next_step_loss() {
    let _rng = lock();
    let mut cfg = tiny(PosEmbedding::Factorized, true);
    cfg.dropout = 0.1;
    cfg.attn_dropout = 0.1;
    let data = tiny_data(10, 24, cfg.vocab, 4);
    let tc = TrainConfig {
        grad_accum: 2,
        weight_decay: 0.1,
        ..train_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(&cfg, &tc, Device::Cpu).unwrap();
    for _ in 0..3 {
        a.train_step(&data).unwrap();
    }
    a.save(dir.path()).unwrap();
    let next_a: Vec<f64> = (0..2).map(|_| a.train_step(&data).unwrap().loss).collect();
    let mut b = Trainer::resume(dir.path(), None, Device::Cpu).unwrap();
    assert_eq!(b.step, 3);
    let next_b: Vec<f64> = (0..2).map(|_| b.train_step(&data).unwrap().loss).collect();
    assert_eq!(next_a, next_b, "resumed run diverged");
    // And the weights agree bit for bit.
    for (n, t) in a.vs.variables() {
        let u = &b.vs.variables()[&n];
        assert!(t.equal(u), "{n} differs after resume");
    }
    // A fresh run (no resume) would not give these losses: resume really restored state.
    let mut c = Trainer::new(&cfg, &tc, Device::Cpu).unwrap();
    c.step = 3;
    assert_ne!(c.train_step(&data).unwrap().loss, next_a[0]);
}

#[test]
fn fp16_loss_scaling_skips_an_overflow_step_and_halves_the_scale() {
    let _rng = lock();
    let cfg = tiny(PosEmbedding::Learned, true);
    let data = tiny_data(8, 17, cfg.vocab, 5);
    // 2^40 overflows fp16 gradients (max 65504) on the first backward pass.
    let tc = TrainConfig {
        precision: Precision::Fp16,
        loss_scale: 2f64.powi(40),
        ..train_cfg()
    };
    let mut t = Trainer::new(&cfg, &tc, Device::Cpu).unwrap();
    let before: Vec<(String, Tensor)> =
        t.vs.variables()
            .into_iter()
            .map(|(n, v)| (n, v.copy()))
            .collect();
    let s = t.train_step(&data).unwrap();
    assert!(s.skipped, "a 2^40 loss scale must overflow fp16");
    assert!(!s.grad_norm.is_finite());
    assert_eq!(s.loss_scale, 2f64.powi(39));
    for (n, v) in &before {
        assert!(
            v.equal(&t.vs.variables()[n]),
            "{n} changed on a skipped step"
        );
    }
    // Keeps halving until the gradients fit, then trains normally.
    let mut skipped = 1;
    let mut applied = None;
    for _ in 0..40 {
        let s = t.train_step(&data).unwrap();
        if s.skipped {
            skipped += 1;
            assert_eq!(s.loss_scale, 2f64.powi(40 - skipped));
        } else {
            applied = Some(s);
            break;
        }
    }
    let s = applied.expect("the scaler never recovered");
    assert!(s.grad_norm.is_finite() && s.loss.is_finite());
    assert!(s.loss_scale < 65504.0 * 64.0);
    let moved = before.iter().any(|(n, v)| !v.equal(&t.vs.variables()[n]));
    assert!(moved, "the first clean step did not update the weights");
    // The scaler's bookkeeping on its own: growth after the interval.
    let mut sc = LossScaler {
        scale: 8.0,
        good_steps: 0,
        growth_interval: 2,
    };
    assert!(sc.update(true) && sc.scale == 8.0);
    assert!(sc.update(true) && sc.scale == 16.0);
    assert!(!sc.update(false) && sc.scale == 8.0 && sc.good_steps == 0);
}

#[test]
fn fp16_and_bf16_losses_track_fp32() {
    let _rng = lock();
    let cfg = tiny(PosEmbedding::Learned, true);
    let data = tiny_data(8, 17, cfg.vocab, 6);
    let mut losses = Vec::new();
    for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
        let tc = TrainConfig {
            precision: p,
            ..train_cfg()
        };
        let mut t = Trainer::new(&cfg, &tc, Device::Cpu).unwrap();
        let l: Vec<f64> = (0..5).map(|_| t.train_step(&data).unwrap().loss).collect();
        losses.push(l);
    }
    for l in &losses[1..] {
        for (a, b) in l.iter().zip(&losses[0]) {
            assert!((a - b).abs() < 0.05, "{l:?} vs fp32 {:?}", losses[0]);
        }
    }
}

/// One AdamW step of the closed form, in f64: moments `m`, `v` and the expected weights `w`
/// after gradient `g` at step `t` (1-based), decoupled weight decay where `decays[i]`.
fn adamw_closed_form(
    tc: &TrainConfig,
    t: i32,
    g: &[f64],
    decays: &[bool],
    (m, v, w): (&mut [f64], &mut [f64], &mut [f64]),
) {
    for i in 0..g.len() {
        m[i] = tc.beta1 * m[i] + (1.0 - tc.beta1) * g[i];
        v[i] = tc.beta2 * v[i] + (1.0 - tc.beta2) * g[i] * g[i];
        let mh = m[i] / (1.0 - tc.beta1.powi(t));
        let vh = v[i] / (1.0 - tc.beta2.powi(t));
        let wd = if decays[i] { tc.weight_decay } else { 0.0 };
        w[i] = w[i] * (1.0 - tc.lr * wd) - tc.lr * mh / (vh.sqrt() + tc.eps);
    }
}

/// The fp32 weights after step `t` equal the closed form's to 1e-6.
fn assert_weights(t: i32, got: &[f32], expect: &[f64]) {
    for i in 0..expect.len() {
        assert!(
            (got[i] as f64 - expect[i]).abs() < 1e-6,
            "step {t} [{i}]: {} vs {}",
            got[i],
            expect[i]
        );
    }
}

#[test]
fn adamw_first_steps_match_the_closed_form() {
    let _rng = lock();
    // One parameter matrix, loss = sum(w * c): gradient c, so AdamW's first update is
    // w1 = w0·(1 − lr·wd) − lr·c/(|c| + ε) and the second uses m, v of two equal gradients.
    let cfg = tiny(PosEmbedding::Learned, true);
    let tc = TrainConfig {
        weight_decay: 0.1,
        lr: 0.01,
        eps: 1e-8,
        ..train_cfg()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let w = (vs.root() / "w").var("weight", &[2, 3], nn::Init::Const(0.5));
    let c = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5, -0.25, 4.0]).view([2, 3]);
    let mut opt = brainscale::nn::AdamW::new(&vs);
    let mut expect = vec![0.5f64; 6];
    let cs: Vec<f64> = Vec::<f32>::try_from(c.view([-1]))
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    let (mut m, mut v) = (vec![0.0; 6], vec![0.0; 6]);
    for step in 1..=2 {
        opt.zero_grad();
        (&w * &c).sum(Kind::Float).backward();
        opt.step(&tc, tc.lr, 1.0);
        let _ = cfg;
        adamw_closed_form(&tc, step, &cs, &[true; 6], (&mut m, &mut v, &mut expect));
        assert_weights(step, &Vec::<f32>::try_from(w.view([-1])).unwrap(), &expect);
    }
}

/// Two parameter tensors (a decayed matrix, an undecayed bias) and gradients that change every
/// step: from the second step on AdamW's gradients are views of one flat buffer, so a wrong
/// offset, a buffer not zeroed between steps or gradients not landing in it all break the
/// closed form.
#[test]
fn adamw_with_a_flat_gradient_buffer_matches_the_closed_form_over_steps() {
    let _rng = lock();
    let tc = TrainConfig {
        weight_decay: 0.1,
        lr: 0.01,
        eps: 1e-8,
        ..train_cfg()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let w = (vs.root() / "a").var("weight", &[2, 3], nn::Init::Const(0.5));
    let b = (vs.root() / "b").var("bias", &[4], nn::Init::Const(-0.25));
    let mut opt = brainscale::nn::AdamW::new(&vs);
    // Variables in name order: a.weight (6, decays) then b.bias (4, no decay).
    let mut expect: Vec<f64> = [vec![0.5; 6], vec![-0.25; 4]].concat();
    let decays: Vec<bool> = (0..10).map(|i| i < 6).collect();
    let (mut m, mut v) = (vec![0.0; 10], vec![0.0; 10]);
    for step in 1..=4i32 {
        // Gradient of sum(w·cw) + sum(b·cb) is (cw, cb), different at every step.
        let g: Vec<f64> = (0..10)
            .map(|i| ((i as f64 + 1.0) * 0.3 - 1.2) * (step as f64).powi(i % 3))
            .collect();
        let gf: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        let cw = Tensor::from_slice(&gf[..6]).view([2, 3]);
        let cb = Tensor::from_slice(&gf[6..]);
        opt.zero_grad();
        ((&w * &cw).sum(Kind::Float) + (&b * &cb).sum(Kind::Float)).backward();
        opt.step(&tc, tc.lr, 1.0);
        let g32: Vec<f64> = gf.iter().map(|&x| x as f64).collect();
        adamw_closed_form(&tc, step, &g32, &decays, (&mut m, &mut v, &mut expect));
        let got: Vec<f32> = [
            Vec::<f32>::try_from(w.view([-1])).unwrap(),
            Vec::<f32>::try_from(b.view([-1])).unwrap(),
        ]
        .concat();
        assert_weights(step, &got, &expect);
    }
}

#[test]
fn learning_rate_warms_up_then_follows_a_cosine() {
    let _rng = lock();
    let tc = TrainConfig {
        lr: 1.0,
        min_lr: 0.1,
        warmup_steps: 10,
        max_steps: 110,
        ..TrainConfig::default()
    };
    assert!((tc.lr_at(0) - 0.1).abs() < 1e-12);
    assert!((tc.lr_at(9) - 1.0).abs() < 1e-12);
    assert!((tc.lr_at(10) - 1.0).abs() < 1e-12);
    assert!((tc.lr_at(60) - 0.55).abs() < 1e-12);
    assert!((tc.lr_at(110) - 0.1).abs() < 1e-12);
}

#[test]
fn hugging_face_gpt2_weights_round_trip() {
    let _rng = lock();
    tch::manual_seed(2);
    let cfg = tiny(PosEmbedding::Learned, true);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Gpt::new(&vs.root(), &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    hf::save_hf(&vs, &cfg, &path).unwrap();
    // HF layout: Conv1D weights are [in, out].
    let raw: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(raw["h.0.attn.c_attn.weight"].size(), vec![32, 96]);
    assert_eq!(raw["h.1.mlp.c_fc.weight"].size(), vec![32, 128]);
    assert_eq!(raw["h.1.mlp.c_proj.weight"].size(), vec![128, 32]);
    assert_eq!(raw["wpe.weight"].size(), vec![24, 32]);
    assert!(raw.contains_key("ln_f.bias") && raw.contains_key("h.1.ln_2.weight"));
    let (implied, _) = hf::read_hf(&path, 4).unwrap();
    assert_eq!(
        (implied.d_model, implied.n_layer, implied.ctx, implied.vocab),
        (32, 2, 24, 16)
    );
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(99);
    let m2 = Gpt::new(&vs2.root(), &cfg).unwrap();
    hf::load_hf(&mut vs2, &path).unwrap();
    for (n, t) in vs.variables() {
        assert!(
            t.equal(&vs2.variables()[&n]),
            "{n} differs after the round trip"
        );
    }
    let idx = Tensor::randint(16, [2, 24], (Kind::Int64, Device::Cpu));
    let a = m.forward(&idx, false, Kind::Float).unwrap();
    let b = m2.forward(&idx, false, Kind::Float).unwrap();
    assert!(a.equal(&b));
    // With a "transformer." prefix and the causal-mask buffers, as HF files have them.
    let mut named: Vec<(String, Tensor)> = raw
        .iter()
        .map(|(n, t)| (format!("transformer.{n}"), t.shallow_clone()))
        .collect();
    named.push((
        "transformer.h.0.attn.bias".into(),
        Tensor::ones([1, 1, 24, 24], (Kind::Float, Device::Cpu)),
    ));
    let p2 = dir.path().join("prefixed.safetensors");
    Tensor::write_safetensors(&named, &p2).unwrap();
    let mut vs3 = nn::VarStore::new(Device::Cpu);
    let _m3 = Gpt::new(&vs3.root(), &cfg).unwrap();
    hf::load_hf(&mut vs3, &p2).unwrap();
    assert!(
        vs3.variables()["h.1.attn.c_proj.weight"].equal(&vs.variables()["h.1.attn.c_proj.weight"])
    );
    // Shape mismatch and factorized models are clear errors.
    let mut vs4 = nn::VarStore::new(Device::Cpu);
    let _m4 = Gpt::new(
        &vs4.root(),
        &GptConfig {
            d_model: 16,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert!(hf::load_hf(&mut vs4, &path)
        .unwrap_err()
        .to_string()
        .contains("shape"));
    let fcfg = tiny(PosEmbedding::Factorized, true);
    let vs5 = nn::VarStore::new(Device::Cpu);
    let _m5 = Gpt::new(&vs5.root(), &fcfg).unwrap();
    assert!(hf::save_hf(&vs5, &fcfg, &path).is_err());
}

#[test]
fn bad_configs_are_clear_errors() {
    let _rng = lock();
    let base = tiny(PosEmbedding::Learned, true);
    let e = GptConfig {
        n_head: 5,
        ..base.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("divisible"), "{e}");
    let e = GptConfig {
        pos: PosEmbedding::Factorized,
        ..base.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("latent_shape"), "{e}");
    let e = GptConfig {
        dropout: 1.5,
        ..base.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("dropout"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "d_model = 64\nn_layer = 0\nn_head = 4\nctx = 8\nvocab = 8\n",
    )
    .unwrap();
    let e = format!("{:#}", GptConfig::load(&p).unwrap_err());
    assert!(e.contains("bad.toml") && e.contains("n_layer"), "{e}");
    std::fs::write(&p, "d_model = 64\nn_layers = 2\n").unwrap();
    let e = format!("{:#}", GptConfig::load(&p).unwrap_err());
    assert!(e.contains("bad.toml"), "{e}");
    let e = format!(
        "{:#}",
        GptConfig::load(&dir.path().join("missing.toml")).unwrap_err()
    );
    assert!(e.contains("missing.toml"), "{e}");
}

#[test]
fn the_model_ladder_loads_and_spans_1m_to_300m_parameters() {
    let _rng = lock();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut counts = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        // The bio-signal models' configs live beside these (tests/biosignal_models.rs).
        let bio = name.starts_with("biot-") || name.starts_with("citrus-");
        if p.extension().is_some_and(|x| x == "toml") && !bio {
            let cfg = GptConfig::load(&p).unwrap();
            counts.push((cfg.param_counts().total, cfg.name.clone()));
        }
    }
    counts.sort();
    assert!(counts.len() >= 8, "{counts:?}");
    assert!(counts.first().unwrap().0 < 2_000_000, "{counts:?}");
    assert!(counts.last().unwrap().0 > 250_000_000, "{counts:?}");
    assert!(counts.iter().any(|(_, n)| n == "videogpt-prior"));
}

/// An independent, loop-by-loop GPT-2 forward pass in f64 (the Hugging Face GPT-2 recipe:
/// c_attn output split into q, k, v then heads; tanh GELU; LayerNorm eps 1e-5; tied head).
fn reference_logits(vs: &nn::VarStore, cfg: &GptConfig, tokens: &[i64]) -> Vec<Vec<f64>> {
    let vars = vs.variables();
    let get = |n: &str| -> (Vec<f64>, Vec<i64>) {
        let t = &vars[n];
        let v: Vec<f32> = Vec::<f32>::try_from(t.reshape([-1])).unwrap();
        (v.into_iter().map(|x| x as f64).collect(), t.size())
    };
    let d = cfg.d_model as usize;
    let (nh, hd) = (cfg.n_head as usize, (cfg.d_model / cfg.n_head) as usize);
    let ln = |x: &[f64], p: &str| -> Vec<f64> {
        let (w, _) = get(&format!("{p}.weight"));
        let (b, _) = get(&format!("{p}.bias"));
        let mu = x.iter().sum::<f64>() / d as f64;
        let var = x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
        (0..d)
            .map(|i| (x[i] - mu) / (var + 1e-5).sqrt() * w[i] + b[i])
            .collect()
    };
    // y = W x + b with W stored [out, in].
    let lin = |x: &[f64], p: &str| -> Vec<f64> {
        let (w, s) = get(&format!("{p}.weight"));
        let (b, _) = get(&format!("{p}.bias"));
        let (o, i) = (s[0] as usize, s[1] as usize);
        (0..o)
            .map(|r| b[r] + (0..i).map(|c| w[r * i + c] * x[c]).sum::<f64>())
            .collect()
    };
    let (wte, _) = get("wte.weight");
    let (wpe, _) = get("wpe.weight");
    let t = tokens.len();
    let mut x: Vec<Vec<f64>> = (0..t)
        .map(|p| {
            (0..d)
                .map(|i| wte[tokens[p] as usize * d + i] + wpe[p * d + i])
                .collect()
        })
        .collect();
    for l in 0..cfg.n_layer {
        let qkv: Vec<Vec<f64>> = x
            .iter()
            .map(|xi| {
                lin(
                    &ln(xi, &format!("h.{l}.ln_1")),
                    &format!("h.{l}.attn.c_attn"),
                )
            })
            .collect();
        let mut y = vec![vec![0.0; d]; t];
        for h in 0..nh {
            for i in 0..t {
                let q = &qkv[i][h * hd..(h + 1) * hd];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        q.iter()
                            .zip(&qkv[j][d + h * hd..d + (h + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - m).exp() / z;
                    for c in 0..hd {
                        y[i][h * hd + c] += p * qkv[j][2 * d + h * hd + c];
                    }
                }
            }
        }
        for i in 0..t {
            let a = lin(&y[i], &format!("h.{l}.attn.c_proj"));
            for c in 0..d {
                x[i][c] += a[c];
            }
            let hdn: Vec<f64> = lin(
                &ln(&x[i], &format!("h.{l}.ln_2")),
                &format!("h.{l}.mlp.c_fc"),
            )
            .into_iter()
            .map(|u| {
                0.5 * u
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (u + 0.044715 * u.powi(3))).tanh())
            })
            .collect();
            let m = lin(&hdn, &format!("h.{l}.mlp.c_proj"));
            for c in 0..d {
                x[i][c] += m[c];
            }
        }
    }
    let v = cfg.vocab as usize;
    x.iter()
        .map(|xi| {
            let f = ln(xi, "ln_f");
            (0..v)
                .map(|k| (0..d).map(|c| wte[k * d + c] * f[c]).sum())
                .collect()
        })
        .collect()
}

#[test]
fn forward_matches_an_independent_gpt2_implementation() {
    let _rng = lock();
    tch::manual_seed(11);
    let cfg = tiny(PosEmbedding::Learned, true);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Gpt::new(&vs.root(), &cfg).unwrap();
    // Weights far larger than GPT-2's init so every term (GELU's tails included) matters.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let _ = t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.3));
        }
    });
    let tokens: Vec<i64> = (0..10).map(|i| (i * 7 + 3) % 16).collect();
    let logits = m
        .forward(
            &Tensor::from_slice(&tokens).view([1, 10]),
            false,
            Kind::Float,
        )
        .unwrap();
    let reference = reference_logits(&vs, &cfg, &tokens);
    let mut worst: f64 = 0.0;
    for (p, row) in reference.iter().enumerate() {
        for (k, want) in row.iter().enumerate() {
            let got = logits.double_value(&[0, p as i64, k as i64]);
            worst = worst.max((got - want).abs() / (1.0 + want.abs()));
        }
    }
    assert!(
        worst < 1e-5,
        "max |logit − reference| / (1 + |reference|) = {worst}"
    );
}
