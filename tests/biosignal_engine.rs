//! The bio-signal models through the training engine (`crate::nn`): MAE pretraining,
//! BIOT's contrastive pretraining, fine-tuning from a pretrained encoder, multimodal mixtures.
use brainscale::biosignal::train::{InMemorySignals, MixtureSignals};
use brainscale::models::biot::BiotConfig;
use brainscale::models::citrus::{CitrusConfig, CitrusVariant};
use brainscale::models::objectives::{MaeTarget, MaskConfig};
use brainscale::models::signal::{Pretraining, Supervised};
use brainscale::nn::{Data, TrainConfig, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

// The engine adapters of each (model, objective), as the tests name them.
type BiotSupervised = Supervised<BiotConfig>;
type BiotContrastive = Pretraining<BiotConfig>;
type CitrusMae = Pretraining<CitrusConfig>;
type CitrusSupervised = Supervised<CitrusConfig>;

static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_citrus(variant: CitrusVariant) -> CitrusConfig {
    CitrusConfig {
        name: "tiny".into(),
        variant,
        max_len: 64,
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
        n_classes: 2,
        mae_target: MaeTarget::Freq { log: true },
        mask: MaskConfig {
            ratio: 0.4,
            span: 2,
        },
    }
}

/// n windows of `c` channels × 64 samples: a fixed-phase sinusoid with random amplitude plus a
/// random level per channel; the label says whether the amplitude exceeds 1.
fn windows(n: i64, c: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let t = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 1, 64]);
    let amp = Tensor::rand([n, c, 1], (Kind::Float, Device::Cpu)) + 0.5;
    let level = Tensor::randn([n, c, 1], (Kind::Float, Device::Cpu)) * 0.5;
    let x = (&t * 0.3).sin() * &amp + level;
    let y = amp
        .mean_dim(1, false, Kind::Float)
        .squeeze_dim(-1)
        .gt(1.0)
        .to_kind(Kind::Int64);
    (x, y)
}

fn train_cfg(steps: u64, lr: f64) -> TrainConfig {
    TrainConfig {
        seed: 3,
        batch_size: 16,
        max_steps: steps,
        lr,
        min_lr: lr / 10.0,
        warmup_steps: 5,
        weight_decay: 0.01,
        eval_samples: 64,
        ..TrainConfig::default()
    }
}

#[test]
fn citrus_mae_loss_falls_through_the_engine_on_a_modality_mixture() {
    let _g = lock();
    // Two "modalities": 1-channel and 3-channel windows, flattened to single channels.
    let (x1, _) = windows(64, 1, 1);
    let (e1, _) = windows(32, 1, 2);
    let (x3, _) = windows(32, 3, 3);
    let (e3, _) = windows(16, 3, 4);
    let mix = MixtureSignals::new(
        vec![
            InMemorySignals::new(x1, None, e1, None)
                .unwrap()
                .into_single_channel(),
            InMemorySignals::new(x3, None, e3, None)
                .unwrap()
                .into_single_channel(),
        ],
        vec![1.0, 1.0],
    )
    .unwrap();
    assert_eq!(mix.eval_len(), 32 + 48);
    let b = mix
        .train_batch(&mut ChaCha8Rng::seed_from_u64(0), 5, Device::Cpu)
        .unwrap();
    assert_eq!(b.x.size(), [5, 1, 64]);
    let mut t = Trainer::<CitrusMae>::new(
        &tiny_citrus(CitrusVariant::Hybrid),
        &train_cfg(50, 3e-3),
        Device::Cpu,
    )
    .unwrap();
    let before = t.eval_loss(&mix).unwrap().unwrap();
    for _ in 0..50 {
        let s = t.train_step(&mix).unwrap();
        assert!(s.loss.is_finite());
    }
    let after = t.eval_loss(&mix).unwrap().unwrap();
    assert!(after < 0.6 * before, "MAE eval loss {before} → {after}");
}

#[test]
fn pretrained_citrus_encoder_fine_tunes_and_learns_labels() {
    let _g = lock();
    let (x, y) = windows(128, 2, 5);
    let (ex, ey) = windows(64, 2, 6);
    let data = InMemorySignals::new(x, Some(y), ex, Some(ey)).unwrap();
    let cfg = tiny_citrus(CitrusVariant::Hybrid);
    let dir = tempfile::tempdir().unwrap();
    let pre = Trainer::<CitrusMae>::new(&cfg, &train_cfg(2, 1e-3), Device::Cpu).unwrap();
    let ck = pre.save(dir.path()).unwrap();
    // Fine-tune: encoder weights load by name; head and decoder come fresh.
    let mut t =
        Trainer::<CitrusSupervised>::with_init(&cfg, &train_cfg(60, 3e-3), Device::Cpu, |vs, _| {
            let missing = vs.load_partial(ck.join("model.safetensors"))?;
            assert!(missing.iter().all(|n| n.starts_with("head")), "{missing:?}");
            Ok(())
        })
        .unwrap();
    let w =
        |vs: &tch::nn::VarStore| vs.variables()["encoder.blocks.0.attn.qkv.weight"].shallow_clone();
    assert!(w(&t.vs).equal(&w(&pre.vs)));
    let before = t.eval_loss(&data).unwrap().unwrap();
    for _ in 0..60 {
        t.train_step(&data).unwrap();
    }
    let after = t.eval_loss(&data).unwrap().unwrap();
    assert!(after < 0.8 * before, "fine-tuning loss {before} → {after}");
    // The conv-only variant trains on the same data (no labels → a clear error).
    let mut c = Trainer::<CitrusSupervised>::new(
        &tiny_citrus(CitrusVariant::Conv),
        &train_cfg(5, 3e-3),
        Device::Cpu,
    )
    .unwrap();
    c.train_step(&data).unwrap();
    let unlabelled =
        InMemorySignals::new(windows(8, 2, 7).0, None, windows(4, 2, 8).0, None).unwrap();
    let e = format!("{:#}", c.train_step(&unlabelled).unwrap_err());
    assert!(e.contains("labelled"), "{e}");
}

#[test]
fn biot_contrastive_pretraining_then_supervised_through_the_engine() {
    let _g = lock();
    let cfg = BiotConfig {
        name: "tiny".into(),
        d_model: 16,
        n_layer: 1,
        n_head: 2,
        n_fft: 16,
        hop: 8,
        n_channels: 4,
        n_classes: 2,
        ..BiotConfig::default()
    };
    let (x, y) = windows(64, 2, 9);
    let (ex, ey) = windows(32, 2, 10);
    let data = InMemorySignals::new(x, Some(y), ex, Some(ey)).unwrap();
    let mut pre = Trainer::<BiotContrastive>::new(&cfg, &train_cfg(20, 1e-3), Device::Cpu).unwrap();
    let before = pre.eval_loss(&data).unwrap().unwrap();
    for _ in 0..20 {
        assert!(pre.train_step(&data).unwrap().loss.is_finite());
    }
    let after = pre.eval_loss(&data).unwrap().unwrap();
    assert!(after < before, "contrastive eval loss {before} → {after}");
    // Same batch seed → same perturbed view → same loss (deterministic objective).
    let b = data.eval_batch(0, 16, Device::Cpu).unwrap();
    use brainscale::nn::Model;
    let l1 = pre
        .model
        .loss(&b, false, Kind::Float)
        .unwrap()
        .total
        .double_value(&[]);
    let l2 = pre
        .model
        .loss(&b, false, Kind::Float)
        .unwrap()
        .total
        .double_value(&[]);
    assert_eq!(l1, l2);
    let dir = tempfile::tempdir().unwrap();
    let ck = pre.save(dir.path()).unwrap();
    let mut t =
        Trainer::<BiotSupervised>::with_init(&cfg, &train_cfg(5, 1e-3), Device::Cpu, |vs, _| {
            let missing = vs.load_partial(ck.join("model.safetensors"))?;
            assert!(missing.iter().all(|n| n.starts_with("head")), "{missing:?}");
            Ok(())
        })
        .unwrap();
    assert!(t.train_step(&data).unwrap().loss.is_finite());
}
