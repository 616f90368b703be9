//! The transfer study (`brainscale biosignal transfer`, and `biosignal demo` at its smallest):
//! does self-supervised pretraining help a bio-signal classifier when labels are scarce?
//!
//! One pretraining shape for everything: 128 Hz × 256 samples (2 s), each window z-scored per
//! channel. Pretraining runs ([`crate::biosignal::pretrain`]):
//! - CiTrus hybrid, masked auto-encoding with a time target and with a frequency target, on a
//!   synthetic EEG-like pool (4 channels);
//! - the same with the frequency target on a multimodal mixture (synthetic EEG + ECG +
//!   accelerometer, each aligned to 128 Hz × 256 by sinc resampling);
//! - BIOT with its contrastive objective on the synthetic EEG pool;
//! - CiTrus, frequency target, on 2-s windows (1-s hop) of the real clinical EEG in EDF+.
//!
//! Downstream sets: a labelled synthetic EEG set (5 rhythm classes; train and test streams
//! disjoint from the pool), and the real Epilepsy subset (TF-C; 178 Hz × 178 samples, aligned
//! by sinc resampling to 128 Hz and zero-padded to 256; train 60, test = its 20 validation
//! windows). Every model is fine-tuned (full) from scratch and from each pretraining run in
//! each data regime with several seeds ([`crate::biosignal::finetune`]); the conv-only variant is
//! fine-tuned from scratch and from the frequency-target hybrid's stem.
//!
//! Every pretraining run is repeated for each pretraining seed ([`Plan::pretrain_seeds`]: the
//! seed draws the initialisation, the batches, the masks / views and dropout), each in its own
//! folder, and each fine-tuned with every fine-tuning seed; the summaries split the sd into
//! pretraining and fine-tuning seeds ([`crate::biosignal::transfer_report`]).
//!
//! The alignment comparison fine-tunes the frequency-pretrained hybrid (largest regime) on the
//! downstream sets aligned four ways — sinc resampling then crop/pad (CiTrus), linear-rate
//! resampling, linear interpolation to the length (stretch) and zero-padding only — with the
//! synthetic set generated at 200 Hz × 200 samples (1 s) for it, and reports each method's
//! spectral error on known sines at the same rates ([`crate::biosignal::resample::alignment_spectral_errors`]).
//!
//! Outputs in `--out`: `runs.csv` (every fine-tuning run; reruns skip the runs it holds, and
//! pretraining resumes from its checkpoints in `pretrain/<name>` for pretraining seed 0 and
//! `pretrain/<name>-seed<k>` for seed k), `transfer-synthetic.csv`, `transfer-epilepsy.csv`
//! (mean, sd split by seed source, binomial interval), `alignment.csv`, `transfer.png` (full
//! fine-tuning) and `transfer-linear-probe.png`.
use crate::biosignal::finetune::{finetune, FinetuneOptions, MeanSd, Mode, Regime};
use crate::biosignal::pretrain::{pretrain, Objective, PretrainOptions};
use crate::biosignal::resample::{self, Method};
use crate::biosignal::synth::{Generator, Modality, SynthSplit};
use crate::biosignal::transfer_report::{draw_figure, RunKey};
pub use crate::biosignal::transfer_report::{render_tables, summarise_runs, RunRow, SummaryRow};
use crate::biosignal::{load, LoadOptions, Norm, Windows};
use crate::models::biot::BiotConfig;
use crate::models::citrus::{CitrusConfig, CitrusVariant};
use crate::models::registry::BioModelConfig;
use crate::models::ModelConfig;
use anyhow::{Context, Result};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The conv-only row initialised from the frequency-target hybrid's stem.
const CONV_STEM: &str = "conv-only ← mae-freq stem (synthetic EEG)";

/// Model rate (Hz) and window length (samples) of the study.
pub const RATE: f64 = 128.0;
pub const LENGTH: usize = 256;

/// Sizes of one run of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A few minutes on 2 cores: small pools, short runs, 3 seeds.
    Demo,
    /// The recorded study (results/biosignal/): larger pools and labelled sets, longer
    /// pretraining, regimes down to 1% (one window per class), 3 pretraining seeds, and the
    /// conv-only fine-tuning-steps check; about 30 minutes on 2 cores.
    Full,
}

/// Everything the study's size depends on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pool_windows: usize,
    pub synth_train: usize,
    pub synth_test: usize,
    pub pretrain_steps: u64,
    pub finetune: FinetuneOptions,
    /// Fine-tuning seeds (each draws the regime's subset, the head and the batches).
    pub seeds: Vec<u64>,
    /// Pretraining seeds: every pretraining method runs once per seed.
    pub pretrain_seeds: Vec<u64>,
    /// Also fine-tune the conv-only rows (scratch and ← stem) on the synthetic set with this
    /// many steps: 40 steps leave the conv-only model under-fitted (results/biosignal.md).
    pub conv_check_steps: Option<u64>,
    pub synth_regimes: Vec<Regime>,
    pub epilepsy_regimes: Vec<Regime>,
    pub citrus: CitrusConfig,
    pub biot: BiotConfig,
}

impl Preset {
    pub fn plan(self) -> Plan {
        let citrus = CitrusConfig::parse(
            include_str!("../../models/citrus-transfer.toml"),
            "models/citrus-transfer.toml",
        )
        .expect("models/citrus-transfer.toml parses");
        let biot = BiotConfig::parse(
            include_str!("../../models/biot-transfer.toml"),
            "models/biot-transfer.toml",
        )
        .expect("models/biot-transfer.toml parses");
        let (pool, train, pre, ft, seeds) = match self {
            Preset::Demo => (600, 250, 150, 40, 3),
            Preset::Full => (1500, 500, 300, 40, 3),
        };
        Plan {
            pool_windows: pool,
            synth_train: train,
            synth_test: 250,
            pretrain_steps: pre,
            finetune: FinetuneOptions {
                steps: ft,
                ..FinetuneOptions::default()
            },
            seeds: (0..seeds).collect(),
            // The recorded study reports the pretraining seeds' spread; the demo stays quick.
            pretrain_seeds: match self {
                Preset::Demo => vec![0],
                Preset::Full => vec![0, 1, 2],
            },
            conv_check_steps: match self {
                Preset::Demo => None,
                Preset::Full => Some(200),
            },
            synth_regimes: match self {
                Preset::Demo => vec![Regime::PerClass(2), Regime::Fraction(1.0)],
                Preset::Full => vec![
                    Regime::Fraction(0.01),
                    Regime::Fraction(0.1),
                    Regime::Fraction(1.0),
                ],
            },
            epilepsy_regimes: vec![Regime::Fraction(0.1), Regime::Fraction(1.0)],
            citrus,
            biot,
        }
    }
}

/// Where the real data are read from.
#[derive(Debug, Clone)]
pub struct RealData {
    /// The Epilepsy subset's `train.safetensors` and `val.safetensors` (test).
    pub epilepsy_train: PathBuf,
    pub epilepsy_test: PathBuf,
    /// The clinical EEG in EDF+ (pretraining pool).
    pub edf: PathBuf,
}

impl RealData {
    /// The files under `DATA/biosignal/` as the data README lays them out (`--data DATA`).
    pub fn under(data: &Path) -> Self {
        let b = data.join("biosignal");
        Self {
            epilepsy_train: b.join("epilepsy/train.safetensors"),
            epilepsy_test: b.join("epilepsy/val.safetensors"),
            edf: b.join("edf/fp1-128hz-698s.edf"),
        }
    }
}

/// Initialisations of a row: (pretraining seed, weights), `[(0, None)]` from scratch.
type Inits = Vec<(u64, Option<PathBuf>)>;

/// A fine-tuned row of the table: label, model, initialisations, fine-tuning settings.
type Variant<'a> = (&'a str, &'a BioModelConfig, &'a Inits, &'a FinetuneOptions);

fn zscored(mut d: Windows) -> Windows {
    d.normalise(Norm::Zscore);
    d
}

/// `n` generated windows of `split`, drawn at `native` = (rate Hz, length), brought to the
/// study's shape ([`RATE`] × [`LENGTH`]) with `method`, and z-scored.
fn synthetic(
    m: Modality,
    split: SynthSplit,
    n: usize,
    seed: u64,
    native: (f64, usize),
    method: Method,
) -> Result<Windows> {
    let g = Generator::new(seed).with_shape(m, native.0, native.1)?;
    let d = g.dataset(m, split, 0, n, false);
    Ok(zscored(resample::align(&d, RATE, LENGTH, method)?))
}

struct Study<'a> {
    plan: &'a Plan,
    out: &'a Path,
    runs: Vec<RunRow>,
    done: std::collections::BTreeSet<RunKey>,
    progress: indicatif::ProgressBar,
}

impl Study<'_> {
    /// Fine-tunes the variant `v` from each of its initialisations in every regime and
    /// fine-tuning seed on `sets` = (train, test) (skipping finished runs).
    fn finetune_all(
        &mut self,
        dataset: &str,
        alignment: &str,
        v: Variant,
        sets: (&Windows, &Windows),
        regimes: &[Regime],
    ) -> Result<()> {
        let (variant, model, inits, opts) = v;
        let (train, test) = sets;
        for &regime in regimes {
            for (pre, init) in inits {
                for &seed in &self.plan.seeds {
                    let key = (
                        dataset.to_string(),
                        variant.to_string(),
                        alignment.to_string(),
                        regime.to_string(),
                        *pre,
                        seed,
                    );
                    self.progress.inc(1);
                    if self.done.contains(&key) {
                        continue;
                    }
                    let what = format!("{variant}, {regime}, pretraining seed {pre}, seed {seed}");
                    self.progress.set_message(format!("{dataset}: {what}"));
                    let r = finetune(model, init.as_deref(), train, test, regime, opts, seed)
                        .with_context(|| format!("fine-tuning {what} on {dataset}"))?;
                    let row = RunRow {
                        dataset: dataset.into(),
                        variant: variant.into(),
                        alignment: alignment.into(),
                        regime: regime.to_string(),
                        pretrain_seed: *pre,
                        seed,
                        n_train: r.n_train,
                        n_test: test.len(),
                        balanced_accuracy: r.scores.balanced_accuracy,
                        auroc: r.scores.auroc,
                        macro_f1: r.scores.macro_f1,
                        kappa: r.scores.kappa,
                    };
                    self.done.insert(row.key());
                    self.runs.push(row);
                    crate::core::io::write_csv(&self.out.join("runs.csv"), &self.runs)?;
                }
            }
        }
        Ok(())
    }

    /// Pretrains (or resumes) one run per pretraining seed, seed 0 under `out/pretrain/<name>`
    /// and seed k under `out/pretrain/<name>-seed<k>`, and returns their weights.
    fn pretrained(
        &mut self,
        name: &str,
        model: &BioModelConfig,
        objective: Objective,
        pools: &[&Windows],
    ) -> Result<Inits> {
        let pools: Vec<Windows> = pools.iter().map(|d| (*d).clone()).collect();
        let mut inits = Vec::new();
        for &seed in &self.plan.pretrain_seeds {
            let folder = pretrain_folder(name, seed);
            let dir = self.out.join("pretrain").join(&folder);
            self.progress.set_message(format!(
                "pretraining {folder} ({} steps)",
                self.plan.pretrain_steps
            ));
            let opts = PretrainOptions {
                steps: self.plan.pretrain_steps,
                seed,
                ..PretrainOptions::default()
            };
            pretrain(model, objective, &pools, &opts, &dir)
                .with_context(|| format!("pretraining {folder}"))?;
            let w = crate::nn::trainer::latest_checkpoint(&dir)?.join("model.safetensors");
            inits.push((seed, Some(w)));
        }
        Ok(inits)
    }
}

/// The folder (under `out/pretrain/`) of pretraining run `name` with `seed`: the bare name for
/// seed 0 (as before pretraining seeds existed, so those checkpoints resume), else
/// `<name>-seed<k>`.
pub fn pretrain_folder(name: &str, seed: u64) -> String {
    if seed == 0 {
        name.to_string()
    } else {
        format!("{name}-seed{seed}")
    }
}

/// Runs the whole study into `out` (see the module docs) and returns the printed table.
pub fn run(plan: &Plan, data: &RealData, out: &Path, progress: bool) -> Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let runs_path = out.join("runs.csv");
    let runs: Vec<RunRow> = crate::core::io::read_csv(&runs_path)?;
    let done = runs.iter().map(RunRow::key).collect();
    let n_seeds = plan.seeds.len() as u64;
    let bar = crate::core::progress::progress_if(progress, 0, "fine-tuning runs");
    let mut st = Study {
        plan,
        out,
        runs,
        done,
        progress: bar,
    };

    // Data: pools, downstream sets.
    let spec = |m: Modality| (m.spec().rate, m.spec().length);
    let eeg_native = (RATE, LENGTH);
    let pool_eeg = synthetic(
        Modality::Eeg,
        SynthSplit::Pretrain,
        plan.pool_windows,
        0,
        eeg_native,
        Method::Sinc,
    )?;
    let ecg = (250.0, 500);
    let acc = (spec(Modality::Accel).0, 100);
    let pool_ecg = synthetic(
        Modality::Ecg,
        SynthSplit::Pretrain,
        plan.pool_windows / 2,
        0,
        ecg,
        Method::Sinc,
    )?;
    let pool_acc = synthetic(
        Modality::Accel,
        SynthSplit::Pretrain,
        plan.pool_windows / 2,
        0,
        acc,
        Method::Sinc,
    )?;
    let edf_opts = LoadOptions {
        window: Some(LENGTH as f64 / RATE),
        hop: Some(1.0),
        ..LoadOptions::default()
    };
    let pool_edf = zscored(resample::align(
        &load(&data.edf, &edf_opts)?,
        RATE,
        LENGTH,
        Method::Sinc,
    )?);
    let synth_train = synthetic(
        Modality::Eeg,
        SynthSplit::Train,
        plan.synth_train,
        0,
        eeg_native,
        Method::Sinc,
    )?;
    let synth_test = synthetic(
        Modality::Eeg,
        SynthSplit::Test,
        plan.synth_test,
        0,
        eeg_native,
        Method::Sinc,
    )?;
    let epi = |method: Method| -> Result<(Windows, Windows)> {
        let o = LoadOptions::default();
        Ok((
            zscored(resample::align(
                &load(&data.epilepsy_train, &o)?,
                RATE,
                LENGTH,
                method,
            )?),
            zscored(resample::align(
                &load(&data.epilepsy_test, &o)?,
                RATE,
                LENGTH,
                method,
            )?),
        ))
    };
    let (epi_train, epi_test) = epi(Method::Sinc)?;

    // Pretraining.
    let hybrid = BioModelConfig::from(plan.citrus.clone());
    let conv = BioModelConfig::from(CitrusConfig {
        variant: CitrusVariant::Conv,
        ..plan.citrus.clone()
    });
    let biot = BioModelConfig::from(plan.biot.clone());
    let w_time = st.pretrained(
        "citrus-mae-time-eeg",
        &hybrid,
        Objective::MaeTime,
        &[&pool_eeg],
    )?;
    let w_freq = st.pretrained(
        "citrus-mae-freq-eeg",
        &hybrid,
        Objective::MaeFreq,
        &[&pool_eeg],
    )?;
    let w_multi = st.pretrained(
        "citrus-mae-freq-multimodal",
        &hybrid,
        Objective::MaeFreq,
        &[&pool_eeg, &pool_ecg, &pool_acc],
    )?;
    let w_con = st.pretrained(
        "biot-contrastive-eeg",
        &biot,
        Objective::Contrastive,
        &[&pool_eeg],
    )?;
    let w_edf = st.pretrained(
        "citrus-mae-freq-edf",
        &hybrid,
        Objective::MaeFreq,
        &[&pool_edf],
    )?;

    // Fine-tuning in every regime: full fine-tuning of every model, and linear probes.
    let full = plan.finetune.clone();
    let probe = FinetuneOptions {
        mode: Mode::Linear,
        lr: 1e-2,
        ..plan.finetune.clone()
    };
    let scratch: Inits = vec![(0, None)];
    let mut variants: Vec<Variant> = vec![
        ("citrus (scratch)", &hybrid, &scratch, &full),
        ("citrus ← mae-time (synthetic EEG)", &hybrid, &w_time, &full),
        ("citrus ← mae-freq (synthetic EEG)", &hybrid, &w_freq, &full),
        ("citrus ← mae-freq (multimodal)", &hybrid, &w_multi, &full),
        ("conv-only (scratch)", &conv, &scratch, &full),
        (CONV_STEM, &conv, &w_freq, &full),
        ("biot (scratch)", &biot, &scratch, &full),
        ("biot ← contrastive (synthetic EEG)", &biot, &w_con, &full),
        ("citrus (scratch), linear probe", &hybrid, &scratch, &probe),
        (
            "citrus ← mae-time (synthetic EEG), linear probe",
            &hybrid,
            &w_time,
            &probe,
        ),
        (
            "citrus ← mae-freq (synthetic EEG), linear probe",
            &hybrid,
            &w_freq,
            &probe,
        ),
        (
            "citrus ← mae-freq (multimodal), linear probe",
            &hybrid,
            &w_multi,
            &probe,
        ),
        ("biot (scratch), linear probe", &biot, &scratch, &probe),
        (
            "biot ← contrastive (synthetic EEG), linear probe",
            &biot,
            &w_con,
            &probe,
        ),
    ];
    let long = plan.conv_check_steps.map(|steps| FinetuneOptions {
        steps,
        ..plan.finetune.clone()
    });
    let long_labels = plan.conv_check_steps.map(|n| {
        (
            format!("conv-only (scratch), {n} steps"),
            format!("{CONV_STEM}, {n} steps"),
        )
    });
    let mut checks: Vec<Variant> = Vec::new();
    if let (Some(o), Some((a, b))) = (&long, &long_labels) {
        checks.push((a, &conv, &scratch, o));
        checks.push((b, &conv, &w_freq, o));
    }
    let edf_rows: [Variant; 2] = [
        ("citrus ← mae-freq (real EDF)", &hybrid, &w_edf, &full),
        (
            "citrus ← mae-freq (real EDF), linear probe",
            &hybrid,
            &w_edf,
            &probe,
        ),
    ];
    let runs_of = |vs: &[Variant], regimes: usize| -> u64 {
        vs.iter().map(|v| v.2.len() as u64).sum::<u64>() * regimes as u64 * n_seeds
    };
    let (n_syn, n_epi) = (plan.synth_regimes.len(), plan.epilepsy_regimes.len());
    st.progress.set_length(
        runs_of(&variants, n_syn + n_epi)
            + runs_of(&checks, n_syn)
            + runs_of(&edf_rows, n_epi)
            + 2 * Method::ALL.len() as u64 * w_freq.len() as u64 * n_seeds,
    );
    let synth_sets = (&synth_train, &synth_test);
    for v in &variants {
        st.finetune_all("synthetic", "sinc", *v, synth_sets, &plan.synth_regimes)?;
    }
    variants.extend(edf_rows);
    for v in &variants {
        st.finetune_all(
            "epilepsy",
            "sinc",
            *v,
            (&epi_train, &epi_test),
            &plan.epilepsy_regimes,
        )?;
    }

    // The conv-only step check after the main tables (its runs are the slowest).
    for v in &checks {
        st.finetune_all("synthetic", "sinc", *v, synth_sets, &plan.synth_regimes)?;
    }

    // Alignment comparison: the frequency-pretrained hybrid, largest regime.
    let top = [*plan.synth_regimes.last().expect("regimes")];
    let top_epi = [*plan.epilepsy_regimes.last().expect("regimes")];
    let aligned = "citrus ← mae-freq (synthetic EEG)";
    let aligned_v: Variant = (aligned, &hybrid, &w_freq, &full);
    let mut sine_err = BTreeMap::new();
    for m in Method::ALL {
        let s_train = synthetic(
            Modality::Eeg,
            SynthSplit::Train,
            plan.synth_train,
            0,
            (200.0, 200),
            m,
        )?;
        let s_test = synthetic(
            Modality::Eeg,
            SynthSplit::Test,
            plan.synth_test,
            0,
            (200.0, 200),
            m,
        )?;
        st.finetune_all(
            "synthetic 200 Hz × 1 s",
            m.name(),
            aligned_v,
            (&s_train, &s_test),
            &top,
        )?;
        let (e_train, e_test) = epi(m)?;
        st.finetune_all(
            "epilepsy",
            m.name(),
            aligned_v,
            (&e_train, &e_test),
            &top_epi,
        )?;
    }
    let freqs = [2.0, 5.0, 10.0, 20.0, 40.0];
    for (dataset, rate_in, len_in) in [
        ("synthetic 200 Hz × 1 s", 200.0, 200),
        ("epilepsy", 178.0, 178),
    ] {
        for r in
            resample::alignment_spectral_errors(&freqs, rate_in, len_in, RATE, LENGTH, &Method::ALL)
        {
            sine_err
                .entry((dataset.to_string(), r.method.name().to_string()))
                .or_insert_with(Vec::new)
                .push(r.spectral_error);
        }
    }
    st.progress.finish_and_clear();

    // Tables and the figure.
    let all = summarise_runs(&st.runs)?;
    let is_align = |r: &SummaryRow| {
        r.variant == aligned
            && ((r.dataset == "epilepsy" && r.regime == top_epi[0].to_string())
                || r.dataset.starts_with("synthetic 200"))
    };
    let main = |ds: &str| -> Vec<SummaryRow> {
        all.iter()
            .filter(|r| r.dataset == ds && r.alignment == "sinc")
            .cloned()
            .collect()
    };
    let mut align: Vec<&SummaryRow> = all.iter().filter(|r| is_align(r)).collect();
    let method_rank = |a: &str| Method::ALL.iter().position(|m| m.name() == a);
    align.sort_by_key(|r| (r.dataset.clone(), method_rank(&r.alignment)));
    let align: Vec<SummaryRow> = align
        .into_iter()
        .map(|r| {
            let e = &sine_err[&(r.dataset.clone(), r.alignment.clone())];
            SummaryRow {
                sine_spectral_error: Some(MeanSd::of(e).mean),
                ..r.clone()
            }
        })
        .collect();
    let sets = [main("synthetic"), main("epilepsy")];
    crate::core::io::write_csv(&out.join("transfer-synthetic.csv"), &sets[0])?;
    crate::core::io::write_csv(&out.join("transfer-epilepsy.csv"), &sets[1])?;
    crate::core::io::write_csv(&out.join("alignment.csv"), &align)?;
    let note = format!(
        "mean over {} fine-tuning × {} pretraining seeds; {} pretraining steps, {} fine-tuning steps; 128 Hz × 2 s windows",
        plan.seeds.len(),
        plan.pretrain_seeds.len(),
        plan.pretrain_steps,
        plan.finetune.steps
    );
    draw_figure(&out.join("transfer.png"), &sets, &note, false)?;
    draw_figure(&out.join("transfer-linear-probe.png"), &sets, &note, true)?;
    Ok(render_tables(&sets, &align))
}
