//! VQ-VAE tokenizer, code caches, the small prior and the GPT feature extractor, on CPU.
use brainscale::fmri::codes::{load_code_data, CodeFile};
use brainscale::fmri::features::gpt::GptExtractor;
use brainscale::fmri::features::Extractor;
use brainscale::fmri::tokenize::{
    self as vqvae, clip_centre, clip_starts, preprocess, Tokenizer, TokenizerTrainConfig,
};
use brainscale::fmri::video::Frames;
use brainscale::models::vqvae::{VqVae, VqVaeConfig};
use brainscale::models::ModelConfig;
use ndarray::{Array1, Array4};
use tch::{nn, Device, Kind, Tensor};

/// libtorch's RNG is process-global; tests run on parallel threads.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the RNG lock; tiny ops run fastest on one libtorch thread (the test machine is shared).
fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// A drifting colour grating (moves 2 px per frame) with a bright square moving the other way.
fn moving_pattern(t: usize, h: usize, w: usize, fps: f64, phase: f64) -> Frames {
    let mut data = Array4::<u8>::zeros((t, h, w, 3));
    for f in 0..t {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let a = 2.0
                        * std::f64::consts::PI
                        * ((x as f64 + 2.0 * f as f64) / 8.0
                            + y as f64 / 16.0
                            + c as f64 / 3.0
                            + phase);
                    let mut v = 127.5 * (1.0 + a.sin());
                    let sx = (w as isize - 1 - (f as isize * 3) % w as isize) as usize;
                    if (x as isize - sx as isize).abs() < 3
                        && (y as isize - (h / 2) as isize).abs() < 3
                    {
                        v = 255.0;
                    }
                    data[[f, y, x, c]] = v.round() as u8;
                }
            }
        }
    }
    Frames {
        data,
        times: Array1::from_iter((0..t).map(|i| i as f64 / fps)),
        fps,
        end: None,
    }
}

fn tiny_cfg() -> VqVaeConfig {
    VqVaeConfig {
        resolution: 16,
        clip_len: 4,
        downsample: [2, 2, 2],
        n_hiddens: 16,
        n_res_layers: 1,
        n_codes: 32,
        embedding_dim: 8,
        attn_heads: 2,
        ema_decay: 0.99,
        commitment: 0.25,
        ..Default::default()
    }
}

#[test]
fn shapes_through_encoder_codebook_and_decoder() {
    let _g = lock();
    tch::manual_seed(0);
    for ds in [[2, 2, 2], [1, 4, 4], [4, 2, 2]] {
        let cfg = VqVaeConfig {
            downsample: ds,
            ..tiny_cfg()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let m = VqVae::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::rand([2, 3, 4, 16, 16], (Kind::Float, Device::Cpu)) - 0.5;
        let o = m.forward(&x, true).unwrap();
        let lat = cfg.latent_shape();
        assert_eq!(o.recon.size(), vec![2, 3, 4, 16, 16], "{ds:?}");
        assert_eq!(o.codes.size(), vec![2, lat[0], lat[1], lat[2]], "{ds:?}");
        let codes = m.encode(&x).unwrap();
        assert_eq!(codes.size(), o.codes.size());
        assert_eq!(m.decode(&codes).unwrap().size(), vec![2, 3, 4, 16, 16]);
        assert!(m
            .forward(&x.narrow(2, 0, 3), false)
            .err()
            .unwrap()
            .to_string()
            .contains("[batch, 3, 4, 16, 16]"));
    }
    // VideoGPT's default: 16×64×64 → 4×16×16 codes.
    assert_eq!(VqVaeConfig::default().latent_shape(), [4, 16, 16]);
    assert!(VqVaeConfig {
        downsample: [3, 2, 2],
        ..tiny_cfg()
    }
    .validate()
    .is_err());
    assert!(VqVaeConfig {
        n_codes: 0,
        ..tiny_cfg()
    }
    .validate()
    .is_err());
}

#[test]
fn preprocessing_resizes_the_shorter_side_and_crops_the_centre() {
    let _g = lock();
    // 20×40 frames: left half black, right half white. Resized to 16×32 and centre-cropped to
    // columns 8..24, the crop is black on its left half and white on its right half.
    let mut data = Array4::<u8>::zeros((2, 20, 40, 3));
    data.slice_mut(ndarray::s![.., .., 20.., ..]).fill(255);
    let f = Frames {
        data,
        times: Array1::from_vec(vec![0.0, 0.1]),
        fps: 10.0,
        end: None,
    };
    let x = preprocess(&f, 16, Device::Cpu).unwrap();
    assert_eq!(x.size(), vec![3, 2, 16, 16]);
    let left = x.narrow(3, 0, 7).max().double_value(&[]);
    let right = x.narrow(3, 9, 7).min().double_value(&[]);
    // Chunked preprocessing (long movies) gives the same pixels.
    let m = moving_pattern(7, 20, 30, 10.0, 0.2);
    let whole = preprocess(&m, 16, Device::Cpu).unwrap();
    let chunked = vqvae::preprocess_chunked(&m, 16, Device::Cpu, 3).unwrap();
    assert_eq!(whole.size(), vec![3, 7, 16, 16]);
    assert!(whole.equal(&chunked));
    assert!((left + 0.5).abs() < 1e-6, "{left}");
    assert!((right - 0.5).abs() < 1e-6, "{right}");
}

#[test]
fn clips_are_cut_inside_the_movie_with_centre_times() {
    assert_eq!(clip_starts(10, 4, 1, 4), vec![0, 4]);
    assert_eq!(clip_starts(10, 4, 3, 1), vec![0]); // span 10
    assert_eq!(clip_starts(9, 4, 3, 1), Vec::<usize>::new());
    assert_eq!(clip_starts(49, 16, 3, 3), vec![0, 3]); // span 46
    let f = moving_pattern(12, 4, 4, 10.0, 0.0);
    // Frames 2..=5 shown from 0.2 s to 0.6 s.
    assert!((clip_centre(&f, 2, 4, 1) - 0.4).abs() < 1e-12);
    // Frames 0, 3, 6, 9 (stride 3): 0.0 s to 1.0 s.
    assert!((clip_centre(&f, 0, 4, 3) - 0.5).abs() < 1e-12);
}

#[test]
fn reconstruction_error_falls_on_a_moving_pattern() {
    let _g = lock();
    let movie = moving_pattern(12, 16, 16, 10.0, 0.0);
    let dir = tempfile::tempdir().unwrap();
    let tc = TokenizerTrainConfig {
        steps: 60,
        batch_size: 2,
        lr: 2e-3,
        seed: 3,
        frame_stride: 1,
        hop: 1,
        checkpoint_every: 0,
    };
    let losses = vqvae::train_tokenizer(
        &tiny_cfg(),
        &tc,
        &[movie.clone()],
        dir.path(),
        Device::Cpu,
        false,
    )
    .unwrap();
    let first = losses[0];
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.5 * first, "reconstruction loss {first} → {last}");
    // The saved tokenizer reconstructs in evaluation mode at least as well as training began.
    let tok = Tokenizer::load(dir.path(), Device::Cpu).unwrap();
    let x = vqvae::cut_clips(
        &preprocess(&movie, 16, Device::Cpu).unwrap(),
        &[0, 4, 8],
        4,
        1,
    );
    let recon = tok.model.decode(&tok.model.encode(&x).unwrap()).unwrap();
    let mse = (recon - &x).square().mean(Kind::Float).double_value(&[]) / 0.06;
    assert!(
        mse < 0.5 * first,
        "eval reconstruction {mse} vs first training loss {first}"
    );
    // Bad folders are clear errors.
    let e = format!(
        "{:#}",
        Tokenizer::load(&dir.path().join("nope"), Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn a_small_prior_trains_and_the_extractor_gives_one_sample_per_clip() {
    let _g = lock();
    let movies: Vec<(String, Frames)> = (0..2)
        .map(|i| {
            (
                format!("movie{i}"),
                moving_pattern(48, 32, 32, 10.0, i as f64 * 0.3),
            )
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let dir =
        brainscale::fmri::pretrain::train_small_prior_frames(&movies, work.path(), 0).unwrap();
    eprintln!("small prior trained in {:.1} s", t0.elapsed().as_secs_f64());
    // Code caches: 2×8×8 codes of 64 per clip, clips every 4 frames.
    let code = CodeFile::load(&work.path().join("codes").join("movie0.codes.safetensors")).unwrap();
    assert_eq!(code.codes.shape(), &[11, 2, 8, 8]);
    assert_eq!(code.n_codes(), 64);
    let data = load_code_data(&[work.path().join("codes/movie0.codes.safetensors")], 0.1).unwrap();
    assert_eq!((data.train.size()[0], data.eval.size()[0]), (9, 2));
    // The prior learned something: held-out loss well below the uniform ln 64 = 4.16.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let eval = summary["final_eval_loss"].as_f64().unwrap();
    assert!(eval < 3.5, "eval loss {eval}");
    assert!(dir.join("loss.csv").exists() && dir.join("tokenizer/vqvae.safetensors").exists());

    let mut ex = GptExtractor::load(&dir, &[0, 2], Device::Cpu, 2).unwrap();
    assert_eq!(ex.feature_dim(), 128);
    assert_eq!(ex.clip_span(), 15);
    let movie = moving_pattern(40, 48, 64, 10.0, 0.1); // not square: resized and cropped
    let f = ex.extract(&movie).unwrap();
    // Clip starts 0, 15 (span 15 < 40, next at 30 does not fit).
    assert_eq!(f.values.dim(), (2, 128));
    assert!(
        (f.times[0] - 0.75).abs() < 1e-9 && (f.times[1] - 2.25).abs() < 1e-9,
        "{:?}",
        f.times
    );
    let again = ex.extract(&movie).unwrap();
    assert_eq!(f.values, again.values, "extraction is deterministic");
    let mut dense = GptExtractor::load(&dir, &[2], Device::Cpu, 2)
        .unwrap()
        .with_hop(5)
        .unwrap();
    let d = dense.extract(&movie).unwrap();
    assert_eq!(d.values.dim(), (6, 64));
    // Layer 2 of the dense run at the clip starting at 15 (index 3) matches the first run.
    for j in 0..64 {
        assert!((d.values[[3, j]] - f.values[[1, 64 + j]]).abs() < 1e-5);
    }
    // Errors: a layer that does not exist, a movie shorter than a clip, no checkpoint.
    assert!(GptExtractor::load(&dir, &[3], Device::Cpu, 1)
        .err()
        .unwrap()
        .to_string()
        .contains("layer 3"));
    let short = moving_pattern(10, 32, 32, 10.0, 0.0);
    assert!(ex
        .extract(&short)
        .unwrap_err()
        .to_string()
        .contains("10 frames"));
    assert!(GptExtractor::load(work.path(), &[1], Device::Cpu, 1).is_err());
    // Re-running reuses the finished prior.
    let again =
        brainscale::fmri::pretrain::train_small_prior_frames(&movies, work.path(), 0).unwrap();
    assert_eq!(again, dir);
}

#[test]
fn tokenizer_training_resumes_bit_for_bit() {
    let _g = lock();
    let movie = moving_pattern(8, 16, 16, 10.0, 0.0);
    let tc = |steps| TokenizerTrainConfig {
        steps,
        batch_size: 2,
        lr: 2e-3,
        seed: 5,
        frame_stride: 1,
        hop: 1,
        checkpoint_every: 2,
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let straight = vqvae::train_tokenizer(
        &tiny_cfg(),
        &tc(6),
        &[movie.clone()],
        a.path(),
        Device::Cpu,
        false,
    )
    .unwrap();
    vqvae::train_tokenizer(
        &tiny_cfg(),
        &tc(3),
        &[movie.clone()],
        b.path(),
        Device::Cpu,
        false,
    )
    .unwrap();
    let resumed = vqvae::train_tokenizer(
        &tiny_cfg(),
        &tc(6),
        &[movie.clone()],
        b.path(),
        Device::Cpu,
        false,
    )
    .unwrap();
    assert_eq!(straight, resumed);
    let wa = Tensor::read_safetensors(a.path().join("vqvae.safetensors")).unwrap();
    let wb: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(b.path().join("vqvae.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for (n, t) in wa {
        assert!(t.equal(&wb[&n]), "{n} differs after resume");
    }
    // From a frame cache, a batch of clips read at a time (`tokenizer train`): the same
    // losses and weights as from the decoded movie.
    let c = tempfile::tempdir().unwrap();
    let cache = c.path().join("movie.safetensors");
    brainscale::fmri::video::save_frames(&cache, &movie, Default::default()).unwrap();
    let streamed = vqvae::train_tokenizer_caches(
        &tiny_cfg(),
        &tc(6),
        &[cache],
        &c.path().join("tok"),
        Device::Cpu,
        false,
    )
    .unwrap();
    assert_eq!(streamed, straight);
    let wc: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(c.path().join("tok/vqvae.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for (n, t) in Tensor::read_safetensors(a.path().join("vqvae.safetensors")).unwrap() {
        assert!(t.equal(&wc[&n]), "{n} differs when trained from the cache");
    }
    // A finished folder is returned as is; another config is refused.
    assert_eq!(
        vqvae::train_tokenizer(
            &tiny_cfg(),
            &tc(6),
            &[movie.clone()],
            b.path(),
            Device::Cpu,
            false
        )
        .unwrap(),
        straight
    );
    let other = VqVaeConfig {
        n_codes: 16,
        ..tiny_cfg()
    };
    assert!(
        vqvae::train_tokenizer(&other, &tc(6), &[movie], b.path(), Device::Cpu, false).is_err()
    );
}

/// The four published VideoGPT configurations' checkpoints (small widths), written by the
/// reference modules (tests/fixtures/videogpt_reference.py, run in the project's .venv) once
/// per test binary, with two videos preprocessed by VideoGPT's `data.preprocess`.
fn videogpt_fixtures() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("brainscale-videogpt-")
            .tempdir()
            .unwrap()
            .keep();
        // Landscape and portrait frames of seeded noise (a sharp test of the interpolation).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (name, shape, res) in [
            ("wide", (3, 45, 80, 3), 16),
            ("tall", (2, 90, 51, 3), 32),
            ("odd", (2, 33, 47, 3), 64), // upsampling
        ] {
            let v = Array4::<u8>::from_shape_fn(shape, |_| rng.gen());
            ndarray_npy::write_npy(dir.join(format!("pre_{res}_{name}.npy")), &v).unwrap();
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ok = std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/fixtures/videogpt_reference.py"))
            .arg("published")
            .arg(&dir)
            .status()
            .expect("run the VideoGPT reference in .venv")
            .success();
        assert!(ok, "the VideoGPT reference fixture failed");
        dir
    })
}

const PUBLISHED: [&str; 4] = [
    "bair_stride4x2x2",
    "ucf101_stride4x4x4",
    "kinetics_stride4x4x4",
    "kinetics_stride2x4x4",
];

fn import_cli(ckpt: &std::path::Path, out: &std::path::Path) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .args(["tokenizer", "import"])
        .arg(ckpt)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn videogpt_checkpoints_import_with_equal_codes_and_decoder_output() {
    let fx = videogpt_fixtures();
    let _g = lock();
    let out = tempfile::tempdir().unwrap();
    for name in PUBLISHED {
        let d = fx.join(name);
        let dir = out.path().join(name);
        let (ok, msg) = import_cli(&d.join("model.ckpt"), &dir);
        assert!(ok, "{name}: {msg}");
        let tok = Tokenizer::load(&dir, Device::Cpu).unwrap();
        let c = &tok.model.cfg;
        assert!(!c.res_conv_bias && c.resize == brainscale::models::vqvae::Resize::Videogpt);
        assert_eq!(c.clip_len, 16);
        let x: ndarray::ArrayD<f32> = ndarray_npy::read_npy(d.join("x.npy")).unwrap();
        let want_codes: ndarray::ArrayD<i64> = ndarray_npy::read_npy(d.join("codes.npy")).unwrap();
        let want_recon: ndarray::ArrayD<f32> = ndarray_npy::read_npy(d.join("recon.npy")).unwrap();
        let xt = Tensor::from_slice(x.as_slice().unwrap()).view(
            x.shape()
                .iter()
                .map(|&s| s as i64)
                .collect::<Vec<_>>()
                .as_slice(),
        );
        let codes = tok.model.encode(&xt).unwrap();
        assert_eq!(
            codes.size(),
            want_codes
                .shape()
                .iter()
                .map(|&s| s as i64)
                .collect::<Vec<_>>()
        );
        let got: Vec<i64> = Vec::try_from(codes.reshape([-1])).unwrap();
        let same = got
            .iter()
            .zip(want_codes.iter())
            .filter(|(a, b)| a == b)
            .count();
        assert_eq!(same, got.len(), "{name}: {same}/{} codes equal", got.len());
        // The decoder from the reference's codes.
        let rc = Tensor::from_slice(want_codes.as_slice().unwrap()).view(codes.size().as_slice());
        let recon: Vec<f32> = Vec::try_from(tok.model.decode(&rc).unwrap().reshape([-1])).unwrap();
        assert_eq!(recon.len(), want_recon.len());
        let err = recon
            .iter()
            .zip(want_recon.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = want_recon.iter().map(|v| v.abs()).fold(0f32, f32::max);
        eprintln!("{name}: codes equal, decoder max |Δ| {err:.2e} (max |y| {scale:.2})");
        assert!(err <= 1e-5, "{name}: decoder max |Δ| {err}");
        assert!(scale > 0.05, "{name}: a degenerate decoder output");
    }
    // A checkpoint whose arguments lack a field: a clear error, no tokenizer folder.
    let bad = out.path().join("bad");
    let (ok, msg) = import_cli(&fx.join("no_n_codes/model.ckpt"), &bad);
    assert!(
        !ok && msg.contains("n_codes") && msg.contains("model.ckpt"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(!bad.join("vqvae.json").exists());
    // Not a checkpoint at all.
    let junk = out.path().join("junk.ckpt");
    std::fs::write(&junk, b"not a zip").unwrap();
    let (ok, msg) = import_cli(&junk, &bad);
    assert!(
        !ok && msg.contains("junk.ckpt") && msg.contains("zip"),
        "{msg}"
    );
    // The kinds of bad file a user meets, each told its own cause, the file named once.
    let real = std::fs::read(fx.join("small/model.ckpt")).unwrap();
    let cut = out.path().join("cut.ckpt");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap(); // an interrupted download
    let empty = out.path().join("empty.ckpt");
    std::fs::write(&empty, b"").unwrap();
    let legacy = out.path().join("legacy.ckpt");
    std::fs::write(&legacy, [0x80u8, 0x02, 0x8a, 0x0a]).unwrap(); // torch < 1.6: a bare pickle
    for (file, want) in [
        (&cut, "truncated or corrupt"),
        (&empty, "empty"),
        (&legacy, "torch < 1.6"),
        (&fx.join("small"), "is a folder"),
    ] {
        let (ok, msg) = import_cli(file, &bad);
        assert!(!ok && msg.contains(want), "{}: {msg}", file.display());
        let name = file.display().to_string();
        assert_eq!(msg.matches(&name).count(), 1, "{msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }
    // --out an existing file: named, nothing written.
    let (ok, msg) = import_cli(&fx.join("small/model.ckpt"), &junk);
    assert!(!ok && msg.contains("is not a folder"), "{msg}");
    assert!(!bad.join("vqvae.json").exists());
}

#[test]
fn videogpt_preprocessing_is_the_reference_pixel_for_pixel() {
    let fx = videogpt_fixtures();
    let _g = lock();
    for (name, res) in [("wide", 16), ("tall", 32), ("odd", 64)] {
        let v: Array4<u8> =
            ndarray_npy::read_npy(fx.join(format!("pre_{res}_{name}.npy"))).unwrap();
        let want: ndarray::Array4<f32> =
            ndarray_npy::read_npy(fx.join(format!("pre_{res}_{name}.out.npy"))).unwrap();
        let t = v.dim().0;
        let f = Frames {
            data: v,
            times: Array1::from_iter((0..t).map(|i| i as f64 / 10.0)),
            fps: 10.0,
            end: None,
        };
        let got = vqvae::preprocess_with(
            &f,
            res,
            brainscale::models::vqvae::Resize::Videogpt,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            got.size(),
            want.shape().iter().map(|&s| s as i64).collect::<Vec<_>>()
        );
        let got: Vec<f32> = Vec::try_from(got.reshape([-1])).unwrap();
        let differ = got
            .iter()
            .zip(want.iter())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{name}: {differ} of {} pixels differ", got.len());
        // brainscale's own (antialiased) resize is a different function.
        let ours: Vec<f32> =
            Vec::try_from(preprocess(&f, res, Device::Cpu).unwrap().reshape([-1])).unwrap();
        assert!(ours.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-3));
    }
}

/// A real clip (../shared/data/video, 176×144 H.264) through decode → tokenize with an
/// imported, reference-written tokenizer (VideoGPT preprocessing of the native frames) →
/// a small prior → features.
#[test]
fn a_real_clip_goes_through_an_imported_tokenizer_to_features() {
    let fx = videogpt_fixtures();
    let movie = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/video/carphone_pristine.mp4");
    if !movie.exists() {
        eprintln!("skipped: {} not found", movie.display());
        return;
    }
    let _g = lock();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (ok, msg) = import_cli(&fx.join("small/model.ckpt"), &w.join("tok"));
    assert!(ok, "{msg}");
    let frames = brainscale::fmri::video::decode_cached(
        &movie,
        &w.join("frames"),
        &brainscale::fmri::video::DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(frames.data.dim(), (120, 144, 176, 3));
    let tok = Tokenizer::load(&w.join("tok"), Device::Cpu).unwrap();
    let paths = vqvae::tokenize_movies(
        &tok,
        &[("carphone".to_string(), frames.clone())],
        &w.join("codes"),
        1,
        4,
    )
    .unwrap();
    let code = CodeFile::load(&paths[0]).unwrap();
    // 120 frames, 8-frame clips every 4 frames: 29 clips of 2×8×8 codes of 16.
    assert_eq!(code.codes.shape(), &[29, 2, 8, 8]);
    let distinct: std::collections::BTreeSet<i64> = code.codes.iter().copied().collect();
    assert!(
        distinct.len() > 1 && distinct.iter().all(|&c| (0..16).contains(&c)),
        "{distinct:?}"
    );
    // Streamed from the frame cache a batch at a time (what `tokenizer encode` does): the
    // same codes and clip times bit for bit as the in-memory path, in the same file layout.
    let cache = brainscale::fmri::video::cache_path(
        &w.join("frames"),
        &movie,
        &brainscale::fmri::video::DecodeOptions::default(),
    );
    let mut fc = brainscale::fmri::video::FrameCache::open(&cache).unwrap();
    assert_eq!(fc.len(), 120);
    assert_eq!(
        fc.read(37..53).unwrap().data,
        frames.data.slice(ndarray::s![37..53, .., .., ..])
    );
    assert!(fc.read(110..121).is_err());
    let (streamed, st) = tok.tokenize_cache(&mut fc, 1, 4, 8).unwrap();
    let streamed: Vec<i64> = Vec::try_from(streamed.reshape([-1])).unwrap();
    assert_eq!(streamed, code.codes.iter().copied().collect::<Vec<_>>());
    assert_eq!(
        st.iter().map(|t| t.to_bits()).collect::<Vec<_>>(),
        code.times.iter().map(|t| t.to_bits()).collect::<Vec<_>>()
    );
    let spaths = vqvae::tokenize_caches(
        &tok,
        &[("carphone".to_string(), cache.clone())],
        &w.join("codes-streamed"),
        1,
        4,
    )
    .unwrap();
    let sc = CodeFile::load(&spaths[0]).unwrap();
    assert_eq!(sc.codes, code.codes);
    assert_eq!(sc.times, code.times);
    // The batch's clips are preprocessed on their own (per frame: the same pixels as the whole
    // movie's); one clip at a time gives the same codes up to near ties of the random codebook
    // (the convolutions' float rounding depends on the batch size).
    let (one, _) = tok.tokenize(&frames, 1, 4, 1).unwrap();
    let one: Vec<i64> = Vec::try_from(one.reshape([-1])).unwrap();
    let same = one
        .iter()
        .zip(code.codes.iter())
        .filter(|(a, b)| a == b)
        .count();
    eprintln!("batch 1 vs 8: {same} of {} codes equal", one.len());
    assert!(
        same as f64 >= 0.95 * one.len() as f64,
        "{same} of {}",
        one.len()
    );
    let whole = vqvae::preprocess_with(
        &frames,
        32,
        brainscale::models::vqvae::Resize::Videogpt,
        Device::Cpu,
    )
    .unwrap();
    let part = Frames {
        data: frames
            .data
            .slice(ndarray::s![40..56, .., .., ..])
            .to_owned(),
        times: frames.times.slice(ndarray::s![40..56]).to_owned(),
        fps: frames.fps,
        end: None,
    };
    let part = vqvae::preprocess_with(
        &part,
        32,
        brainscale::models::vqvae::Resize::Videogpt,
        Device::Cpu,
    )
    .unwrap();
    assert!(whole.narrow(1, 40, 16).equal(&part));
    // A prior on the codes, then features from its hidden states.
    std::fs::write(
        w.join("gpt.toml"),
        "d_model = 16\nn_layer = 1\nn_head = 2\nctx = 128\nvocab = 16\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .current_dir(w)
        .args([
            "pretrain", "--codes", "codes", "--model", "gpt.toml", "--out", "prior",
        ])
        .args(["--max-steps", "3", "--batch-size", "2", "--device", "cpu"])
        .args(["--threads", "1", "--eval-fraction", "0.1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ex = GptExtractor::load(&w.join("prior"), &[1], Device::Cpu, 1)
        .unwrap()
        .with_hop(8)
        .unwrap();
    // The features stage decodes at the native size for this (imported) tokenizer.
    assert_eq!(ex.decode_size(Some(64)), None);
    let f = ex.extract(&frames).unwrap();
    assert_eq!(f.values.dim(), (15, 16));
    // The features stage's path reads the cache clip by clip: the same features bit for bit.
    let fs = ex
        .extract_cache(&mut brainscale::fmri::video::FrameCache::open(&cache).unwrap())
        .unwrap();
    assert_eq!(
        fs.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        f.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(fs.times, f.times);
    assert!(f.values.iter().all(|v| v.is_finite()));
    assert!(
        (f.times[0] - 8.0 / 2.0 / frames.fps).abs() < 1e-6,
        "{:?}",
        f.times
    );

    // Saved features and codes record the tokenizer and frames they came from (issue 21: the
    // GPT features made before imported tokenizers decoded at native size were not seen stale).
    use brainscale::fmri::features::{ExtractorKind, FeaturesOptions, GptFeatureArgs};
    let opts = FeaturesOptions {
        extractor: ExtractorKind::Gpt,
        pca: None,
        fps: None,
        size: Some(64),
        gpt: Some(GptFeatureArgs {
            model: Some(w.join("prior")),
            layers: vec![1],
            clip_stride: 1,
            hop: Some(8),
            device: "cpu".into(),
        }),
        decode: Default::default(),
    };
    let save = |config: String| {
        let p = w.join("features.safetensors");
        f.save(
            &p,
            std::collections::HashMap::from([("config".into(), config)]),
        )
        .unwrap();
        p
    };
    let now = opts.fingerprint().unwrap();
    assert!(now.contains("size native"), "{now}");
    let p = save(now.clone());
    assert!(opts.is_current(&p).unwrap());
    // What the features stage recorded before: the options and the prior's checkpoint only.
    let before = serde_json::to_string(&opts).unwrap()
        + &std::fs::read_to_string(w.join("prior/latest.json")).unwrap();
    assert!(!opts.is_current(&save(before)).unwrap());
    let p = save(now.clone());
    // The same checkpoint imported again into the prior's tokenizer folder: a new tokenizer.
    let (ok, msg) = import_cli(&fx.join("small/model.ckpt"), &w.join("prior/tokenizer"));
    assert!(ok, "{msg}");
    assert!(!opts.is_current(&p).unwrap());
    assert_ne!(opts.fingerprint().unwrap(), now);
    // The code caches likewise: kept while the tokenizer is the same, remade when it changes.
    let codes = &spaths[0];
    let made = std::fs::metadata(codes).unwrap().modified().unwrap();
    let again = vqvae::tokenize_caches(
        &tok,
        &[("carphone".to_string(), cache.clone())],
        &w.join("codes-streamed"),
        1,
        4,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&again[0]).unwrap().modified().unwrap(),
        made
    );
    let meta = CodeFile::load(codes).unwrap().meta;
    assert_eq!(meta["frames"], "decoder 2, size native");
    let (ok, msg) = import_cli(&fx.join("small/model.ckpt"), &w.join("tok"));
    assert!(ok, "{msg}");
    vqvae::tokenize_caches(
        &tok,
        &[("carphone".to_string(), cache.clone())],
        &w.join("codes-streamed"),
        1,
        4,
    )
    .unwrap();
    let remade = CodeFile::load(codes).unwrap().meta;
    assert_ne!(remade["tokenizer_identity"], meta["tokenizer_identity"]);
    assert_eq!(CodeFile::load(codes).unwrap().codes, sc.codes);
}

/// Issue 21: `tokenizer encode` with an imported (`resize = "videogpt"`) tokenizer decodes the
/// movie at its native size and applies VideoGPT's `data.preprocess` itself, so its codes are
/// the reference pipeline's (ffmpeg decode at native size → `data.preprocess` → `VQVAE.encode`,
/// run in .venv on the same frames) exactly. Before the fix the frames were decoded already at
/// 32×32 (ffmpeg AREA) and 1/4 of the codes differed.
#[test]
fn tokenizer_encode_with_an_imported_tokenizer_gives_the_reference_codes() {
    let fx = videogpt_fixtures();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let movie = root.join("../shared/data/video/carphone_pristine.mp4");
    if !movie.exists() {
        eprintln!("skipped: {} not found", movie.display());
        return;
    }
    let _g = lock();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ckpt = fx.join("small/model.ckpt");
    let (ok, msg) = import_cli(&ckpt, &w.join("tok"));
    assert!(ok, "{msg}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .args(["tokenizer", "encode", "--movies"])
        .arg(&movie)
        .args(["--tokenizer"])
        .arg(w.join("tok"))
        .args(["--out"])
        .arg(w.join("codes"))
        .args(["--cache"])
        .arg(w.join("frames"))
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The frames were cached at the native size (the cache's name says so), not at 32.
    let native = brainscale::fmri::video::cache_path(
        &w.join("frames"),
        &movie,
        &brainscale::fmri::video::DecodeOptions::default(),
    );
    assert!(native.exists(), "no native-size frame cache");
    let small = brainscale::fmri::video::DecodeOptions {
        size: Some(32),
        ..Default::default()
    };
    assert!(!brainscale::fmri::video::cache_path(&w.join("frames"), &movie, &small).exists());
    let mut fc = brainscale::fmri::video::FrameCache::open(&native).unwrap();
    let n = fc.len();
    let frames = fc.read(0..n).unwrap();
    assert_eq!(frames.data.dim(), (120, 144, 176, 3));
    // brainscale's native decode is the ffmpeg CLI's, byte for byte.
    let cli = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&movie)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(cli.status.success());
    assert_eq!(cli.stdout.as_slice(), frames.data.as_slice().unwrap());
    // The reference pipeline on those frames: 8-frame clips every 8 frames, batches of 8.
    let npy = w.join("frames.npy");
    ndarray_npy::write_npy(&npy, &frames.data).unwrap();
    let want_path = w.join("want.npy");
    let ok = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/fixtures/videogpt_reference.py"))
        .arg("encode")
        .arg(&ckpt)
        .arg(&npy)
        .args(["8", "8"])
        .arg(&want_path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the reference encode failed");
    let want: ndarray::ArrayD<i64> = ndarray_npy::read_npy(&want_path).unwrap();
    let got = CodeFile::load(&w.join("codes/carphone_pristine.codes.safetensors")).unwrap();
    assert_eq!(got.codes.shape(), want.shape());
    assert_eq!(got.codes.shape(), &[15, 2, 8, 8]);
    let differ = got
        .codes
        .iter()
        .zip(want.iter())
        .filter(|(a, b)| a != b)
        .count();
    // Not bit-identical: 1 code of 1,920 differs. This codebook has near and exact ties (the
    // reference's nearest and second distances differ by 0 or 1 ulp at some positions, with
    // distances ~1e-4), so float rounding decides them. The old 32×32 decode differed in ~25%.
    eprintln!("{differ} of {} codes differ from the reference", want.len());
    assert!(
        differ * 200 <= want.len(),
        "{differ} of {} codes differ",
        want.len()
    );
    // The bug's path (frames decoded at 32×32 by ffmpeg before the VideoGPT step) is far off:
    // this comparison can fail.
    let (c32, _) =
        brainscale::fmri::video::decode_to_cache(&movie, &w.join("frames"), &small).unwrap();
    let tok = Tokenizer::load(&w.join("tok"), Device::Cpu).unwrap();
    let (old, _) = tok
        .tokenize_cache(
            &mut brainscale::fmri::video::FrameCache::open(&c32).unwrap(),
            1,
            8,
            8,
        )
        .unwrap();
    let old: Vec<i64> = Vec::try_from(old.reshape([-1])).unwrap();
    let old_differ = old.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
    eprintln!("32×32 decode: {old_differ} of {} codes differ", want.len());
    assert!(old_differ * 10 > want.len(), "{old_differ}");
    // A random codebook that collapsed to one code would make the comparison empty.
    let distinct: std::collections::BTreeSet<i64> = want.iter().copied().collect();
    eprintln!("{} distinct codes of {}", distinct.len(), want.len());
    assert!(distinct.len() >= 4, "{distinct:?}");
}

/// VideoGPT's `AxialBlock` builds its attention with n_layer = 1: the output projection's
/// std is 1/sqrt(C), whatever the number of residual layers. The residual convs' bias is a
/// config field: without it the model has VideoGPT's 2,880 fewer parameters (default widths).
#[test]
fn attention_init_and_residual_bias_follow_videogpt() {
    let _g = lock();
    tch::manual_seed(0);
    let cfg = VqVaeConfig {
        n_hiddens: 128,
        n_res_layers: 4,
        ..tiny_cfg()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    VqVae::new(&vs.root(), &cfg).unwrap();
    let v = vs.variables();
    for name in [
        "encoder.res_stack.3.attn_2.fc.weight",
        "decoder.res_stack.0.attn_1.fc.weight",
    ] {
        let std = v[name].std(true).double_value(&[]);
        let want = 1.0 / 128f64.sqrt();
        assert!(
            (std / want - 1.0).abs() < 0.05,
            "{name}: std {std}, want {want}"
        );
    }
    let count = |cfg: &VqVaeConfig| {
        let vs = nn::VarStore::new(Device::Cpu);
        VqVae::new(&vs.root(), cfg).unwrap();
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>()
    };
    let d = VqVaeConfig::default();
    let without = VqVaeConfig {
        res_conv_bias: false,
        ..d.clone()
    };
    assert_eq!(count(&d) - count(&without), 2880);
}
