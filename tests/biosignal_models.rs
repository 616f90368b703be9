//! Bio-signal models (BIOT, CiTrus hybrid) and their objectives, on CPU at tiny sizes, against
//! closed forms, naive formulations and an independent PyTorch build (`bench/biot_torch.py`).
use brainscale::models::biot::{linear_attention, stft_tokens, Biot, BiotConfig, BiotPretrain};
use brainscale::models::citrus::{Citrus, CitrusConfig, CitrusVariant};
use brainscale::models::objectives::{
    biot_keep_frames, info_nce, mae_target, masked_mse, patch_spectrum, patchify, span_mask,
    MaeTarget, MaskConfig,
};
use brainscale::models::ModelConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// libtorch's RNG is process-global and tests run on parallel threads: every test holds this lock.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn numel(vs: &nn::VarStore) -> u64 {
    vs.variables().values().map(|t| t.numel() as u64).sum()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn tiny_biot() -> BiotConfig {
    BiotConfig {
        name: "tiny".into(),
        d_model: 16,
        n_layer: 2,
        n_head: 4,
        n_fft: 16,
        hop: 8,
        n_channels: 5,
        n_classes: 3,
        ff_mult: 4,
        attn_dropout: 0.0,
        pos_dropout: 0.0,
        max_frames: 64,
    }
}

fn tiny_citrus(variant: CitrusVariant, target: MaeTarget) -> CitrusConfig {
    CitrusConfig {
        name: "tiny".into(),
        variant,
        max_len: 128,
        stem_channels: 8,
        kernel_size: 5,
        stem_blocks: 1,
        norm_groups: 4,
        patch_len: 8,
        d_model: 32,
        n_layer: 2,
        n_head: 4,
        ff_mult: 2,
        dropout: 0.0,
        dec_d_model: 16,
        dec_layers: 1,
        dec_n_head: 2,
        n_classes: 3,
        mae_target: target,
        mask: MaskConfig {
            ratio: 0.4,
            span: 2,
        },
    }
}

/// |DFT| of x[start..start+n] at bin k, in f64, straight from the definition.
fn dft_mag(x: &[f64], start: usize, n: usize, k: usize) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for j in 0..n {
        let a = -2.0 * std::f64::consts::PI * (k * j) as f64 / n as f64;
        re += x[start + j] * a.cos();
        im += x[start + j] * a.sin();
    }
    (re * re + im * im).sqrt()
}

#[test]
fn stft_tokens_equal_a_direct_dft_of_each_window() {
    let _g = lock();
    tch::manual_seed(0);
    let (n_fft, hop, l) = (16usize, 8usize, 70usize);
    let x = Tensor::randn([2, 3, l as i64], (Kind::Float, Device::Cpu));
    let s = stft_tokens(&x, n_fft as i64, hop as i64).unwrap();
    let t = (l - n_fft) / hop + 1;
    assert_eq!(s.size(), [2, 3, t as i64, (n_fft / 2 + 1) as i64]);
    let xv: Vec<f64> = Vec::try_from(x.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    for b in 0..2 {
        for c in 0..3 {
            let row = &xv[(b * 3 + c) * l..(b * 3 + c + 1) * l];
            for f in 0..t {
                for k in 0..=n_fft / 2 {
                    let want = dft_mag(row, f * hop, n_fft, k);
                    let got = s.double_value(&[b as i64, c as i64, f as i64, k as i64]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want),
                        "b{b} c{c} t{f} k{k}: {got} vs {want}"
                    );
                }
            }
        }
    }
    assert!(
        stft_tokens(&x.narrow(2, 0, 10), 16, 8).is_err(),
        "shorter than one frame"
    );
    assert!(stft_tokens(&x.get(0), 16, 8).is_err(), "not 3-D");
}

/// The same kernel as `linear_attention`, in O(N²) pairwise form: out_i = Σ_j (q̃_i·k̃_j) v_j with
/// q̃ = softmax over features · d_h^(−1/2) and k̃ = softmax over the sequence, per head, in f64.
fn naive_linear_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let (b, h, n, dh) = q.size4().unwrap();
    let get =
        |t: &Tensor| -> Vec<f64> { Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap() };
    let (qv, kv, vv) = (get(q), get(k), get(v));
    let (n, dh) = (n as usize, dh as usize);
    let mut out = vec![0.0; qv.len()];
    for bh in 0..(b * h) as usize {
        let at = |t: &Vec<f64>, i: usize, d: usize| t[(bh * n + i) * dh + d];
        for i in 0..n {
            let zq: f64 = (0..dh).map(|d| at(&qv, i, d).exp()).sum();
            for j in 0..n {
                let mut w = 0.0;
                for d in 0..dh {
                    let zk: f64 = (0..n).map(|jj| at(&kv, jj, d).exp()).sum();
                    w += at(&qv, i, d).exp() / zq * at(&kv, j, d).exp() / zk;
                }
                w /= (dh as f64).sqrt();
                for e in 0..dh {
                    out[(bh * n + i) * dh + e] += w * at(&vv, j, e);
                }
            }
        }
    }
    Tensor::from_slice(&out).view(q.size().as_slice())
}

#[test]
fn linear_attention_matches_the_naive_quadratic_form() {
    let _g = lock();
    tch::manual_seed(1);
    let shape = [2i64, 3, 7, 4];
    let q = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let k = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let v = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let fast = linear_attention(&q, &k, &v, Kind::Float);
    let slow = naive_linear_attention(&q, &k, &v);
    assert!(
        max_abs_diff(&fast, &slow) < 1e-5,
        "{}",
        max_abs_diff(&fast, &slow)
    );
}

#[test]
fn biot_param_counts_match_the_built_model() {
    let _g = lock();
    for cfg in [tiny_biot(), BiotConfig::default()] {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = Biot::new(&vs.root(), &cfg).unwrap();
        let pc = cfg.param_counts();
        assert_eq!(pc.total, numel(&vs), "{}", cfg.name);
        let head: u64 = vs
            .variables()
            .iter()
            .filter(|(n, _)| n.starts_with("head"))
            .map(|(_, t)| t.numel() as u64)
            .sum();
        assert_eq!(pc.head, head);
        assert_eq!(
            pc.per_token,
            pc.encoder - (cfg.n_channels * cfg.d_model) as u64
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let _p = BiotPretrain::new(&vs.root(), &cfg).unwrap();
        assert_eq!(numel(&vs), pc.encoder + pc.predictor);
    }
    // BIOT's reference size (d 256, 8 heads, depth 4, 101 bins, 18-channel table, 2 classes):
    // 4 × (12·256² + 10·256) + (101·256 + 256) + 18·256 + (2·256 + 2) = 3,187,202 ≈ 3.2 M.
    assert_eq!(BiotConfig::default().param_counts().total, 3_187_202);
}

#[test]
fn biot_flops_equal_a_hand_count() {
    // tiny: d 16, 4 heads (d_h 4), 2 layers, 9 bins, ff 64, 3 classes; 70 samples → 7 frames × 2 ch.
    let cfg = tiny_biot();
    let per_layer = 3 * 16 * 16 + 16 * 16 + 16 * 64 + 64 * 16; // q, k, v, out, w1, w2 weights
    let per_layer_other = 2 * 16 + 16 + 2 * 16 + 64 + 16; // norms and biases
    let n = (9 * 16 + 16) + 2 * (per_layer + per_layer_other);
    assert_eq!(cfg.param_counts().per_token, n as u64);
    // Attention per token and layer forward: Kᵀ·V 2·d·d_h + Q·context 2·d·d_h = 256; ×3 training.
    let per_token = 6.0 * n as f64 + 3.0 * 2.0 * 256.0;
    assert_eq!(cfg.train_flops_per_token(), per_token);
    let per_sample = 14.0 * per_token + 6.0 * (16.0 * 3.0 + 3.0);
    assert_eq!(cfg.train_flops_per_sample(2, 70), per_sample);
}

#[test]
fn citrus_param_counts_and_flops() {
    let _g = lock();
    for (v, t) in [
        (CitrusVariant::Hybrid, MaeTarget::Time),
        (CitrusVariant::Hybrid, MaeTarget::Freq { log: true }),
        (CitrusVariant::Conv, MaeTarget::Time),
    ] {
        let cfg = tiny_citrus(v, t);
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = Citrus::new(&vs.root(), &cfg).unwrap();
        let pc = cfg.param_counts();
        assert_eq!(pc.total, numel(&vs), "{v:?} {t:?}");
        let stem: u64 = vs
            .variables()
            .iter()
            .filter(|(n, _)| n.starts_with("stem"))
            .map(|(_, t)| t.numel() as u64)
            .sum();
        assert_eq!(pc.stem, stem);
    }
    // Hand count for the conv variant, 2 channels × 64 samples: conv_in 1→8 k5 + 2 convs 8→8 k5.
    let cfg = tiny_citrus(CitrusVariant::Conv, MaeTarget::Time);
    let conv = 6.0 * (8.0 * 5.0 * 64.0) + 2.0 * 6.0 * (8.0 * 8.0 * 5.0 * 64.0);
    assert_eq!(
        cfg.train_flops_per_sample(2, 64, false),
        2.0 * conv + 6.0 * (8.0 * 3.0 + 3.0)
    );
}

/// Writes `cfg` and a freshly initialised BIOT's weights, runs `bench/biot_torch.py logits` on the
/// same input, returns (our logits, our STFT, torch's logits, torch's STFT).
fn torch_reference(
    cfg: &BiotConfig,
    x: &Tensor,
    offset: i64,
    dir: &Path,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Biot::new(&vs.root(), cfg).unwrap();
    let ours = tch::no_grad(|| m.logits(x, offset, false, Kind::Float)).unwrap();
    let spec = stft_tokens(x, cfg.n_fft, cfg.hop).unwrap();
    let [c, w, i, o] =
        ["m.toml", "w.safetensors", "x.safetensors", "y.safetensors"].map(|f| dir.join(f));
    std::fs::write(&c, cfg.to_toml().unwrap()).unwrap();
    vs.save(&w).unwrap();
    Tensor::write_safetensors(&[("x", x), ("channel_offset", &Tensor::from(offset))], &i).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    let out = std::process::Command::new(&py)
        .arg(root.join("bench/biot_torch.py"))
        .args(["logits", "--config"])
        .arg(&c)
        .arg("--weights")
        .arg(&w)
        .arg("--input")
        .arg(&i)
        .arg("--out")
        .arg(&o)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "biot_torch.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: std::collections::HashMap<_, _> =
        Tensor::read_safetensors(&o).unwrap().into_iter().collect();
    (
        ours,
        spec,
        got["logits"].shallow_clone(),
        got["stft"].shallow_clone(),
    )
}

#[test]
fn biot_logits_match_an_independent_pytorch_build() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    // Tiny config, and BIOT's reference configuration on a 4-channel 10-s clip at 200 Hz.
    for (cfg, c, l, off) in [
        (tiny_biot(), 3, 70, 1),
        (
            BiotConfig {
                attn_dropout: 0.2,
                ..BiotConfig::default()
            },
            4,
            2000,
            2,
        ),
    ] {
        tch::manual_seed(7);
        let x = Tensor::randn([2, c, l], (Kind::Float, Device::Cpu));
        let (ours, spec, theirs, their_spec) = torch_reference(&cfg, &x, off, dir.path());
        assert_eq!(ours.size(), [2, cfg.n_classes]);
        let d = max_abs_diff(&ours, &theirs);
        assert!(d < 1e-4, "d{}: logits differ by {d}", cfg.d_model);
        let ds = max_abs_diff(&spec, &their_spec) / (1.0 + spec.abs().max().double_value(&[]));
        assert!(
            ds < 1e-5,
            "STFT (unfold + rfft) vs torch.stft: relative {ds}"
        );
    }
}

#[test]
fn biot_token_subset_view_and_contrastive_loss() {
    let _g = lock();
    tch::manual_seed(3);
    let cfg = tiny_biot();
    let vs = nn::VarStore::new(Device::Cpu);
    let m = BiotPretrain::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::randn([4, 2, 70], (Kind::Float, Device::Cpu));
    // Mean pooling over a permutation-equivariant encoder: all frames in any order = the full view.
    let full = m.encoder.encode(&x, 0, false, Kind::Float).unwrap();
    let all = vec![vec![6, 0, 3, 1, 5, 2, 4], (0..7).rev().collect()];
    let perm = m
        .encoder
        .encode_subset(&x, 0, &all, false, Kind::Float)
        .unwrap();
    assert!(max_abs_diff(&full, &perm) < 1e-5);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let keep = biot_keep_frames(2, 7, &mut rng);
    for k in &keep {
        assert!((3..=6).contains(&k.len()), "{} of 7 frames kept", k.len());
        let mut s = k.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), k.len(), "frames drawn without replacement");
    }
    assert!(m
        .encoder
        .encode_subset(&x, 0, &[vec![7]], false, Kind::Float)
        .is_err());
    let loss = m
        .contrastive_loss(&x, 0, &keep, 0.2, true, Kind::Float)
        .unwrap();
    let v = loss.double_value(&[]);
    assert!(v.is_finite() && v > 0.0);
}

#[test]
fn info_nce_equals_its_definition() {
    let a = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).view([2, 2]);
    let b = Tensor::from_slice(&[3.0f32, 4.0, 0.0, -1.0]).view([2, 2]);
    // Cosines: a0 = (1,0), a1 = (0,1); b0 = (0.6, 0.8), b1 = (0, −1).
    let s: [[f64; 2]; 2] = [[0.6, 0.0], [0.8, -1.0]];
    let t: f64 = 0.2;
    let row = |i: usize| -> f64 {
        let z: f64 = (0..2).map(|j| (s[i][j] / t).exp()).sum();
        -(s[i][i] / t) + z.ln()
    };
    let want = (row(0) + row(1)) / 2.0;
    let got = info_nce(&a, &b, t).unwrap().double_value(&[]);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    assert!(info_nce(&a, &b, 0.0).is_err());
}

#[test]
fn span_masks_have_the_exact_count_in_runs_and_are_seeded() {
    let cfg = MaskConfig {
        ratio: 0.5,
        span: 4,
    };
    let draw = |seed| {
        span_mask(
            200,
            32,
            &cfg,
            &mut ChaCha8Rng::seed_from_u64(seed),
            Device::Cpu,
        )
        .unwrap()
    };
    let m = draw(5);
    assert_eq!(m.size(), [200, 32]);
    assert!(
        m.sum_dim_intlist(1, false, Kind::Int64)
            .eq(16)
            .all()
            .int64_value(&[])
            == 1
    );
    assert!(m.equal(&draw(5)) && !m.equal(&draw(6)));
    // Runs: 16 masked patches in spans of 4 give far fewer runs than independent masking (≈ 8.3).
    let v: Vec<bool> = Vec::try_from(m.flatten(0, -1)).unwrap();
    let runs: usize = v
        .chunks(32)
        .map(|r| (0..32).filter(|&j| r[j] && (j == 0 || !r[j - 1])).count())
        .sum();
    let mean_runs = runs as f64 / 200.0;
    assert!(mean_runs < 5.0, "mean runs per row {mean_runs}");
    assert!(span_mask(1, 1, &cfg, &mut ChaCha8Rng::seed_from_u64(0), Device::Cpu).is_err());
    assert!(MaskConfig {
        ratio: 1.0,
        span: 1
    }
    .validate()
    .is_err());
}

#[test]
fn masked_losses_only_count_masked_positions() {
    let _g = lock();
    tch::manual_seed(4);
    let target = Tensor::randn([3, 6, 5], (Kind::Float, Device::Cpu));
    let mask = Tensor::from_slice(&[true, false, false, true, true, false])
        .view([1, 6])
        .repeat([3, 1]);
    let noise = Tensor::randn([3, 6, 5], (Kind::Float, Device::Cpu));
    let unmasked_only = &target + &noise * mask.logical_not().unsqueeze(-1);
    assert_eq!(
        masked_mse(&unmasked_only, &target, &mask)
            .unwrap()
            .double_value(&[]),
        0.0
    );
    let masked_only = &target + &noise * mask.unsqueeze(-1);
    let want = (&noise * mask.unsqueeze(-1))
        .square()
        .sum(Kind::Double)
        .double_value(&[])
        / (9.0 * 5.0);
    let got = masked_mse(&masked_only, &target, &mask)
        .unwrap()
        .double_value(&[]);
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    assert!(masked_mse(&target, &target, &mask.zeros_like()).is_err());
    // Frequency target: |DFT|/√P of each patch, log1p optionally.
    let x = Tensor::randn([2, 24], (Kind::Float, Device::Cpu));
    let p = patchify(&x, 8).unwrap();
    assert_eq!(p.size(), [2, 3, 8]);
    let spec = patch_spectrum(&p, false);
    let xv: Vec<f64> = Vec::try_from(x.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    for (s, pi, k) in [(0usize, 0usize, 0usize), (1, 2, 3), (0, 1, 4)] {
        let want = dft_mag(&xv[s * 24..], pi * 8, 8, k) / 8f64.sqrt();
        let got = spec.double_value(&[s as i64, pi as i64, k as i64]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    let logt = mae_target(&p, MaeTarget::Freq { log: true });
    assert!(max_abs_diff(&logt, &spec.log1p()) < 1e-6);
    assert!(patchify(&x, 7).is_err());
}

#[test]
fn citrus_is_channel_independent_and_takes_any_channel_count() {
    let _g = lock();
    tch::manual_seed(5);
    for v in [CitrusVariant::Hybrid, CitrusVariant::Conv] {
        let cfg = tiny_citrus(v, MaeTarget::Time);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Citrus::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::randn([2, 3, 64], (Kind::Float, Device::Cpu));
        let e = m.encode(&x, false, Kind::Float).unwrap();
        assert_eq!(e.size(), [2, cfg.embed_dim()]);
        // The embedding is the mean of the per-channel embeddings.
        let per: Vec<Tensor> = (0..3)
            .map(|c| m.encode(&x.narrow(1, c, 1), false, Kind::Float).unwrap())
            .collect();
        let mean = Tensor::stack(&per, 0).mean_dim(0, false, Kind::Float);
        assert!(max_abs_diff(&e, &mean) < 1e-5, "{v:?}");
        // Other modalities: 1 channel, a shorter window (resampled to the model rate).
        assert_eq!(
            m.logits(&x.narrow(1, 0, 1).narrow(2, 0, 32), false, Kind::Float)
                .unwrap()
                .size(),
            [2, 3]
        );
    }
    let m = Citrus::new(
        &nn::VarStore::new(Device::Cpu).root(),
        &tiny_citrus(CitrusVariant::Hybrid, MaeTarget::Time),
    )
    .unwrap();
    assert!(m
        .encode(
            &Tensor::zeros([1, 1, 60], (Kind::Float, Device::Cpu)),
            false,
            Kind::Float
        )
        .is_err());
    assert!(m
        .encode(
            &Tensor::zeros([1, 1, 256], (Kind::Float, Device::Cpu)),
            false,
            Kind::Float
        )
        .is_err());
}

#[test]
fn citrus_reconstruction_never_sees_masked_samples() {
    let _g = lock();
    tch::manual_seed(6);
    let cfg = tiny_citrus(CitrusVariant::Hybrid, MaeTarget::Freq { log: false });
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Citrus::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::randn([2, 2, 64], (Kind::Float, Device::Cpu));
    let mask = span_mask(
        4,
        8,
        &cfg.mask,
        &mut ChaCha8Rng::seed_from_u64(1),
        Device::Cpu,
    )
    .unwrap();
    let pred = m.reconstruct(&x, &mask, false, Kind::Float).unwrap();
    assert_eq!(pred.size(), [4, 8, 5]);
    let samples = mask
        .repeat_interleave_self_int(8, Some(1), None)
        .view([2, 2, 64]);
    let x2 = &x + Tensor::randn([2, 2, 64], (Kind::Float, Device::Cpu)) * &samples;
    let pred2 = m.reconstruct(&x2, &mask, false, Kind::Float).unwrap();
    assert_eq!(
        max_abs_diff(&pred, &pred2),
        0.0,
        "masked samples leaked into the prediction"
    );
    let x3 = &x + Tensor::randn([2, 2, 64], (Kind::Float, Device::Cpu)) * samples.logical_not();
    assert!(
        max_abs_diff(
            &pred,
            &m.reconstruct(&x3, &mask, false, Kind::Float).unwrap()
        ) > 1e-4
    );
    let conv = Citrus::new(
        &nn::VarStore::new(Device::Cpu).root(),
        &tiny_citrus(CitrusVariant::Conv, MaeTarget::Time),
    )
    .unwrap();
    assert!(conv.mae_loss(&x, 0, true, Kind::Float).is_err());
}

#[test]
fn citrus_mae_loss_falls_with_adam() {
    let _g = lock();
    tch::manual_seed(8);
    for target in [MaeTarget::Time, MaeTarget::Freq { log: true }] {
        let cfg = tiny_citrus(CitrusVariant::Hybrid, target);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Citrus::new(&vs.root(), &cfg).unwrap();
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        // A fixed-phase sinusoid times a random amplitude plus a random level per sequence: the
        // masked patches are predictable from the visible ones (level, amplitude) and positions.
        let t = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 1, 64]);
        let batch = |seed: u64| {
            tch::manual_seed(seed as i64);
            let amp = Tensor::rand([8, 2, 1], (Kind::Float, Device::Cpu)) + 0.5;
            let level = Tensor::randn([8, 2, 1], (Kind::Float, Device::Cpu));
            (&t * 0.3).sin() * amp + level
        };
        let eval = |m: &Citrus| {
            tch::no_grad(|| {
                m.mae_loss(&batch(999), 42, false, Kind::Float)
                    .unwrap()
                    .double_value(&[])
            })
        };
        let before = eval(&m);
        for step in 0..50u64 {
            let loss = m.mae_loss(&batch(step), step, true, Kind::Float).unwrap();
            opt.backward_step(&loss);
        }
        let after = eval(&m);
        assert!(
            after < 0.5 * before,
            "{}: MAE loss {before} → {after}",
            target.name()
        );
    }
}

#[test]
fn model_configs_in_models_dir_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut biot = Vec::new();
    let mut citrus = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("biot-") {
            let c = BiotConfig::load(&p).unwrap();
            assert_eq!(format!("{}.toml", c.name), name);
            biot.push(c.param_counts().encoder);
        } else if name.starts_with("citrus-") {
            let c = CitrusConfig::load(&p).unwrap();
            assert_eq!(format!("{}.toml", c.name), name);
            citrus += 1;
        }
    }
    biot.sort();
    assert!(
        biot.len() >= 6 && citrus >= 2,
        "{} BIOT, {citrus} CiTrus configs",
        biot.len()
    );
    assert!(
        biot[0] < 100_000 && *biot.last().unwrap() > 5_000_000,
        "ladder {biot:?}"
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "d_model = 30\nn_head = 8\n").unwrap();
    let err = format!("{:#}", BiotConfig::load(bad.path()).unwrap_err());
    assert!(
        err.contains("not divisible") && err.contains(&bad.path().display().to_string()),
        "{err}"
    );
}

/// BIOT's published checkpoints are `BIOTEncoder` state dicts (lucidrains names): one written by
/// the reference code (tests/fixtures/biot_checkpoint.py, real `linear_attention_transformer`,
/// random weights, d 256, 8 heads, depth 4, n_fft 200, hop 100) is imported natively and gives
/// the reference's logits, including a clip of 600 frames (the reference's table holds 1000).
#[test]
fn biot_checkpoint_from_the_reference_code_imports_with_equal_logits() {
    use brainscale::models::biot_import;
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/fixtures/biot_checkpoint.py"))
        .arg(dir.path())
        .arg("7")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "biot_checkpoint.py failed (run scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imp = biot_import::import(&dir.path().join("encoder.ckpt"), None).unwrap();
    let c = &imp.config;
    assert_eq!(
        (
            c.d_model,
            c.n_head,
            c.n_layer,
            c.n_fft,
            c.hop,
            c.n_channels,
            c.max_frames,
            c.ff_mult
        ),
        (256, 8, 4, 200, 100, 16, 1000, 4)
    );
    let r: std::collections::HashMap<_, _> =
        Tensor::read_safetensors(dir.path().join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Biot::new(&vs.root(), c).unwrap();
    let vars = vs.variables();
    assert_eq!(
        vars.len(),
        imp.tensors.len() + 2,
        "every encoder variable imported"
    );
    tch::no_grad(|| {
        for (k, v) in &imp.tensors {
            vars[k].shallow_clone().copy_(v);
        }
        vars["head.weight"].shallow_clone().copy_(&r["head_weight"]);
        vars["head.bias"].shallow_clone().copy_(&r["head_bias"]);
    });
    for i in 0..2 {
        let ours = tch::no_grad(|| m.logits(&r[&format!("x_{i}")], 0, false, Kind::Float)).unwrap();
        let d = max_abs_diff(&ours, &r[&format!("logits_{i}")]);
        assert!(d <= 1e-5, "clip {i}: logits differ by {d}");
    }
    // Saved under brainscale's names, it initialises a fine-tune (every encoder variable).
    let w = dir.path().join("imported.safetensors");
    imp.save(&w).unwrap();
    let vs2 = nn::VarStore::new(Device::Cpu);
    let _m2 = Biot::new(&vs2.root(), c).unwrap();
    let n = brainscale::biosignal::finetune::load_pretrained(&vs2, &w, &["head."]).unwrap();
    assert_eq!(n, imp.tensors.len());
    // Not a BIOT encoder: the file and the fault named.
    let bad = dir.path().join("other.pt");
    std::fs::copy(dir.path().join("reference.safetensors"), &bad).unwrap();
    let e = format!("{:#}", biot_import::import(&bad, None).err().unwrap());
    assert!(e.contains("other.pt"), "{e}");
}

/// BIOT's position table holds 1000 frames (the reference's `max_len`): a config with a
/// smaller `max_frames` still takes a clip of 600 frames, and 1001 frames are refused by name.
#[test]
fn biot_position_table_takes_the_references_1000_frames() {
    let _g = lock();
    tch::manual_seed(1);
    let cfg = BiotConfig {
        max_frames: 64,
        ..tiny_biot()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Biot::new(&vs.root(), &cfg).unwrap();
    let frames = |t: i64| (t - 1) * cfg.hop + cfg.n_fft;
    let x = Tensor::randn([1, 1, frames(600)], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| m.forward(&x, false, Kind::Float)).unwrap();
    assert_eq!(y.size(), [1, cfg.n_classes]);
    let x = Tensor::randn([1, 1, frames(1001)], (Kind::Float, Device::Cpu));
    let e = format!("{:#}", m.forward(&x, false, Kind::Float).err().unwrap());
    assert!(e.contains("1001 frames"), "{e}");
}
