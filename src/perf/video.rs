//! `bench-tokenize`: throughput of the VQ-VAE encoder (the tokenize step) at VideoGPT's default
//! widths (240 hidden, 4 residual layers, 256-d codes, 2048 codes, downsample 4×4×4, 16-frame
//! clips, no residual-conv bias: the published tokenizers' architecture), random weights, eval
//! mode, on random clips, against the reference PyTorch encoder (`VQVAE.encode` of
//! wilson1yan/VideoGPT, `tests/fixtures/videogpt_reference.py bench`) at the same size, batch
//! and threads, alternated in the same run. Wall and CPU seconds of the timed loop on both
//! sides (after one warm-up batch); medians over repeats.
use crate::models::vqvae::{VqVae, VqVaeConfig};
use crate::perf::ridge::{load_average, process_cpu_seconds};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// What to time.
#[derive(Debug, Clone)]
pub struct TokenizeBench {
    /// Frame side (pixels).
    pub resolution: i64,
    /// Clips encoded in the timed loop (rounded up to whole batches).
    pub clips: usize,
    pub batch: usize,
    /// libtorch CPU threads (the reference is given the same).
    pub threads: i32,
    /// Alternations of brainscale and the reference; medians reported.
    pub repeats: usize,
    /// Also time the reference (needs `.venv/bin/python` with torch).
    pub reference: bool,
}

/// One side's timed loop.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub clips: usize,
    pub seconds: f64,
    pub cpu_seconds: f64,
}

impl Timing {
    /// Frames (16 per clip) per second of wall time.
    pub fn frames_per_s(&self) -> f64 {
        self.clips as f64 * 16.0 / self.seconds
    }

    /// CPU seconds (user + system, all threads) per frame.
    pub fn cpu_per_frame(&self) -> f64 {
        self.cpu_seconds / (self.clips as f64 * 16.0)
    }
}

/// Medians of the repeats, each side, and the load average before and after.
#[derive(Debug, Clone)]
pub struct TokenizeBenchRow {
    pub brainscale: Timing,
    pub reference: Option<Timing>,
    pub load: (Option<f64>, Option<f64>),
}

/// The published tokenizers' encoder at `resolution`.
pub fn videogpt_default(resolution: i64) -> VqVaeConfig {
    VqVaeConfig {
        resolution,
        res_conv_bias: false,
        ..Default::default()
    }
}

/// brainscale's encoder on random clips (seeded): one warm-up batch, then `clips` clips.
fn time_brainscale(b: &TokenizeBench) -> Result<Timing> {
    tch::manual_seed(0);
    let cfg = videogpt_default(b.resolution);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VqVae::new(&vs.root(), &cfg)?;
    let r = b.resolution;
    let x = Tensor::rand([b.batch as i64, 3, 16, r, r], (Kind::Float, Device::Cpu)) - 0.5;
    let _ = model.encode(&x)?;
    let (t0, c0) = (Instant::now(), process_cpu_seconds());
    let mut n = 0;
    while n < b.clips {
        let _ = model.encode(&x)?;
        n += b.batch;
    }
    Ok(Timing {
        clips: n,
        seconds: t0.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds() - c0,
    })
}

/// The reference's timed loop, from its last output line (JSON).
fn time_reference(b: &TokenizeBench, python: &Path, script: &Path) -> Result<Timing> {
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("bench")
        .args([
            b.resolution.to_string(),
            b.clips.to_string(),
            b.batch.to_string(),
            b.threads.to_string(),
            "cpu".to_string(),
        ])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("parsing the output of {}: {text}", script.display()))?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow!("{}: no {k} in {text}", script.display()))
    };
    Ok(Timing {
        clips: num("clips")? as usize,
        seconds: num("seconds")?,
        cpu_seconds: num("cpu_seconds")?,
    })
}

/// Runs the benchmark (see the module docs). Errors: zero batch, clips or repeats; the
/// reference failing to run.
pub fn bench_tokenize(b: &TokenizeBench) -> Result<TokenizeBenchRow> {
    if b.batch == 0 || b.clips == 0 || b.repeats == 0 || b.threads < 1 {
        bail!("--batch, --clips, --repeats and --threads must be positive");
    }
    tch::set_num_threads(b.threads);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let load0 = load_average();
    let (mut ours, mut theirs) = (vec![], vec![]);
    for _ in 0..b.repeats {
        ours.push(time_brainscale(b)?);
        if b.reference {
            theirs.push(time_reference(
                b,
                &root.join(".venv/bin/python"),
                &root.join("tests/fixtures/videogpt_reference.py"),
            )?);
        }
    }
    Ok(TokenizeBenchRow {
        brainscale: median(ours),
        reference: (!theirs.is_empty()).then(|| median(theirs)),
        load: (load0, load_average()),
    })
}

/// The repeat with the median wall time.
fn median(mut v: Vec<Timing>) -> Timing {
    v.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    v[v.len() / 2]
}

/// The row as `bench-tokenize` prints it.
pub fn describe(b: &TokenizeBench, r: &TokenizeBenchRow) -> String {
    let line = |who: &str, t: &Timing| {
        format!(
            "{who}: {} clips of 16×{}×{} in {:.2} s, {:.1} frames/s, {:.2} CPU s ({:.1} CPU ms/frame)",
            t.clips,
            b.resolution,
            b.resolution,
            t.seconds,
            t.frames_per_s(),
            t.cpu_seconds,
            1e3 * t.cpu_per_frame()
        )
    };
    let mut s = format!(
        "VQ-VAE encode, VideoGPT default widths, batch {}, {} threads, median of {} (load average {} → {})\n{}",
        b.batch,
        b.threads,
        b.repeats,
        r.load.0.map_or("?".into(), |l| format!("{l:.2}")),
        r.load.1.map_or("?".into(), |l| format!("{l:.2}")),
        line("brainscale", &r.brainscale)
    );
    if let Some(t) = &r.reference {
        s += &format!(
            "\n{}\nbrainscale / reference: {:.2}× frames/s, {:.2}× CPU per frame",
            line("reference (PyTorch)", t),
            r.brainscale.frames_per_s() / t.frames_per_s(),
            r.brainscale.cpu_per_frame() / t.cpu_per_frame()
        );
    }
    s
}
