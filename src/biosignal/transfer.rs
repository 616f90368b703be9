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
//! The alignment comparison fine-tunes the frequency-pretrained hybrid (largest regime) on the
//! downstream sets aligned four ways — sinc resampling then crop/pad (CiTrus), linear-rate
//! resampling, linear interpolation to the length (stretch) and zero-padding only — with the
//! synthetic set generated at 200 Hz × 200 samples (1 s) for it, and reports each method's
//! spectral error on known sines at the same rates ([`crate::biosignal::resample::alignment_spectral_errors`]).
//!
//! Outputs in `--out`: `runs.csv` (every fine-tuning run; reruns skip the runs it holds, and
//! pretraining resumes from its checkpoints), `transfer-synthetic.csv`, `transfer-epilepsy.csv`
//! (mean ± sd over seeds), `alignment.csv`, `transfer.png` (full fine-tuning) and
//! `transfer-linear-probe.png`.
use crate::biosignal::finetune::{
    finetune, summarise, FinetuneOptions, MeanSd, Mode, Regime, ScoreSummary,
};
use crate::biosignal::metrics::Scores;
use crate::biosignal::pretrain::{pretrain, Objective, PretrainOptions};
use crate::biosignal::resample::{self, Method};
use crate::biosignal::synth::{Generator, Modality, SynthSplit};
use crate::biosignal::{load, LoadOptions, Norm, Windows};
use crate::core::plot::{draw, Figure, Panel, Series, Style};
use crate::models::biot::BiotConfig;
use crate::models::citrus::{CitrusConfig, CitrusVariant};
use crate::models::registry::BioModelConfig;
use crate::models::ModelConfig;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Model rate (Hz) and window length (samples) of the study.
pub const RATE: f64 = 128.0;
pub const LENGTH: usize = 256;

/// Sizes of one run of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A few minutes on 2 cores: small pools, short runs, 3 seeds.
    Demo,
    /// The recorded study (results/biosignal/): larger pools and labelled sets, longer
    /// pretraining, regimes down to 1% (one window per class); about 20 minutes on 2 cores.
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
    pub seeds: Vec<u64>,
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

/// A fine-tuned row of the table: label, model, pretrained weights, fine-tuning settings.
type Variant<'a> = (
    &'a str,
    &'a BioModelConfig,
    Option<&'a Path>,
    &'a FinetuneOptions,
);

/// One fine-tuning run, a row of `runs.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRow {
    pub dataset: String,
    /// Model and initialisation, e.g. "citrus ← mae-freq (synthetic EEG)".
    pub variant: String,
    /// Alignment method of the downstream set.
    pub alignment: String,
    pub regime: String,
    pub seed: u64,
    pub n_train: usize,
    pub balanced_accuracy: f64,
    pub auroc: f64,
    pub macro_f1: f64,
    pub kappa: f64,
}

impl RunRow {
    fn key(&self) -> (String, String, String, String, u64) {
        (
            self.dataset.clone(),
            self.variant.clone(),
            self.alignment.clone(),
            self.regime.clone(),
            self.seed,
        )
    }
    fn scores(&self) -> Scores {
        Scores {
            n: 0,
            classes: 0,
            balanced_accuracy: self.balanced_accuracy,
            auroc: self.auroc,
            auc_pr: None,
            macro_f1: self.macro_f1,
            weighted_f1: f64::NAN,
            kappa: self.kappa,
        }
    }
}

/// A summarised row of `transfer-*.csv` / `alignment.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub dataset: String,
    pub variant: String,
    pub alignment: String,
    pub regime: String,
    pub n_train: usize,
    pub seeds: usize,
    pub balanced_accuracy: String,
    pub auroc: String,
    pub macro_f1: String,
    pub kappa: String,
    pub balanced_accuracy_mean: f64,
    pub balanced_accuracy_sd: f64,
    pub auroc_mean: f64,
    pub auroc_sd: f64,
    /// Mean spectral error of the alignment method on known sines (alignment rows only).
    pub sine_spectral_error: Option<f64>,
}

fn summary_row(first: &RunRow, s: &ScoreSummary, sine: Option<f64>) -> SummaryRow {
    SummaryRow {
        dataset: first.dataset.clone(),
        variant: first.variant.clone(),
        alignment: first.alignment.clone(),
        regime: first.regime.clone(),
        n_train: first.n_train,
        seeds: s.seeds,
        balanced_accuracy: s.balanced_accuracy.to_string(),
        auroc: s.auroc.to_string(),
        macro_f1: s.macro_f1.to_string(),
        kappa: s.kappa.to_string(),
        balanced_accuracy_mean: s.balanced_accuracy.mean,
        balanced_accuracy_sd: s.balanced_accuracy.sd,
        auroc_mean: s.auroc.mean,
        auroc_sd: s.auroc.sd,
        sine_spectral_error: sine,
    }
}

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
    done: std::collections::BTreeSet<(String, String, String, String, u64)>,
    progress: indicatif::ProgressBar,
}

impl Study<'_> {
    /// Fine-tunes `model` from `init` in every regime and seed (skipping finished runs).
    #[allow(clippy::too_many_arguments)]
    fn finetune_all(
        &mut self,
        dataset: &str,
        variant: &str,
        alignment: &str,
        model: &BioModelConfig,
        init: Option<&Path>,
        opts: &FinetuneOptions,
        train: &Windows,
        test: &Windows,
        regimes: &[Regime],
    ) -> Result<()> {
        for &regime in regimes {
            for &seed in &self.plan.seeds {
                let key = (
                    dataset.to_string(),
                    variant.to_string(),
                    alignment.to_string(),
                    regime.to_string(),
                    seed,
                );
                self.progress.inc(1);
                if self.done.contains(&key) {
                    continue;
                }
                self.progress
                    .set_message(format!("{dataset}: {variant}, {regime}, seed {seed}"));
                let r =
                    finetune(model, init, train, test, regime, opts, seed).with_context(|| {
                        format!("fine-tuning {variant} on {dataset} ({regime}, seed {seed})")
                    })?;
                let row = RunRow {
                    dataset: dataset.into(),
                    variant: variant.into(),
                    alignment: alignment.into(),
                    regime: regime.to_string(),
                    seed,
                    n_train: r.n_train,
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
        Ok(())
    }

    /// Pretrains (or resumes) one run under `out/pretrain/<name>` and returns its weights.
    fn pretrained(
        &mut self,
        name: &str,
        model: &BioModelConfig,
        objective: Objective,
        pools: &[&Windows],
    ) -> Result<PathBuf> {
        let dir = self.out.join("pretrain").join(name);
        self.progress.set_message(format!(
            "pretraining {name} ({} steps)",
            self.plan.pretrain_steps
        ));
        let pools: Vec<Windows> = pools.iter().map(|d| (*d).clone()).collect();
        let opts = PretrainOptions {
            steps: self.plan.pretrain_steps,
            ..PretrainOptions::default()
        };
        pretrain(model, objective, &pools, &opts, &dir)
            .with_context(|| format!("pretraining {name}"))?;
        Ok(crate::nn::trainer::latest_checkpoint(&dir)?.join("model.safetensors"))
    }
}

/// The summaries of `runs` grouped by (dataset, variant, alignment, regime), in first-seen order.
pub fn summarise_runs(runs: &[RunRow]) -> Result<Vec<SummaryRow>> {
    let mut order: Vec<(String, String, String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String, String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in runs {
        let k = (
            r.dataset.clone(),
            r.variant.clone(),
            r.alignment.clone(),
            r.regime.clone(),
        );
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    order
        .iter()
        .map(|k| {
            let g = &groups[k];
            let scores: Vec<Scores> = g.iter().map(|r| r.scores()).collect();
            let s = summarise(&scores.iter().collect::<Vec<_>>())?;
            Ok(summary_row(g[0], &s, None))
        })
        .collect()
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
    let mut variants: Vec<Variant> = vec![
        ("citrus (scratch)", &hybrid, None, &full),
        (
            "citrus ← mae-time (synthetic EEG)",
            &hybrid,
            Some(&w_time),
            &full,
        ),
        (
            "citrus ← mae-freq (synthetic EEG)",
            &hybrid,
            Some(&w_freq),
            &full,
        ),
        (
            "citrus ← mae-freq (multimodal)",
            &hybrid,
            Some(&w_multi),
            &full,
        ),
        ("conv-only (scratch)", &conv, None, &full),
        (
            "conv-only ← mae-freq stem (synthetic EEG)",
            &conv,
            Some(&w_freq),
            &full,
        ),
        ("biot (scratch)", &biot, None, &full),
        (
            "biot ← contrastive (synthetic EEG)",
            &biot,
            Some(&w_con),
            &full,
        ),
        ("citrus (scratch), linear probe", &hybrid, None, &probe),
        (
            "citrus ← mae-time (synthetic EEG), linear probe",
            &hybrid,
            Some(&w_time),
            &probe,
        ),
        (
            "citrus ← mae-freq (synthetic EEG), linear probe",
            &hybrid,
            Some(&w_freq),
            &probe,
        ),
        (
            "citrus ← mae-freq (multimodal), linear probe",
            &hybrid,
            Some(&w_multi),
            &probe,
        ),
        ("biot (scratch), linear probe", &biot, None, &probe),
        (
            "biot ← contrastive (synthetic EEG), linear probe",
            &biot,
            Some(&w_con),
            &probe,
        ),
    ];
    st.progress.set_length(
        n_seeds
            * (variants.len() as u64 * plan.synth_regimes.len() as u64
                + (variants.len() as u64 + 2) * plan.epilepsy_regimes.len() as u64
                + 2 * Method::ALL.len() as u64),
    );
    for (name, m, w, o) in &variants {
        st.finetune_all(
            "synthetic",
            name,
            "sinc",
            m,
            *w,
            o,
            &synth_train,
            &synth_test,
            &plan.synth_regimes,
        )?;
    }
    variants.push(("citrus ← mae-freq (real EDF)", &hybrid, Some(&w_edf), &full));
    variants.push((
        "citrus ← mae-freq (real EDF), linear probe",
        &hybrid,
        Some(&w_edf),
        &probe,
    ));
    for (name, m, w, o) in &variants {
        st.finetune_all(
            "epilepsy",
            name,
            "sinc",
            m,
            *w,
            o,
            &epi_train,
            &epi_test,
            &plan.epilepsy_regimes,
        )?;
    }

    // Alignment comparison: the frequency-pretrained hybrid, largest regime.
    let top = [*plan.synth_regimes.last().expect("regimes")];
    let top_epi = [*plan.epilepsy_regimes.last().expect("regimes")];
    let aligned = "citrus ← mae-freq (synthetic EEG)";
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
            aligned,
            m.name(),
            &hybrid,
            Some(&w_freq),
            &full,
            &s_train,
            &s_test,
            &top,
        )?;
        let (e_train, e_test) = epi(m)?;
        st.finetune_all(
            "epilepsy",
            aligned,
            m.name(),
            &hybrid,
            Some(&w_freq),
            &full,
            &e_train,
            &e_test,
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
    draw_figure(&out.join("transfer.png"), &sets, plan, false)?;
    draw_figure(&out.join("transfer-linear-probe.png"), &sets, plan, true)?;
    Ok(render_tables(&sets, &align))
}

/// The printed tables: balanced accuracy (mean ± sd) per variant × regime, then alignment.
pub fn render_tables(sets: &[Vec<SummaryRow>], align: &[SummaryRow]) -> String {
    let mut s = String::new();
    for rows in sets {
        let Some(first) = rows.first() else { continue };
        let mut regimes: Vec<String> = Vec::new();
        for r in rows {
            if !regimes.contains(&r.regime) {
                regimes.push(r.regime.clone());
            }
        }
        s += &format!(
            "\n{}: balanced accuracy, mean ± sd over {} seeds (n = training windows)\n{:<44}",
            first.dataset, first.seeds, "model ← pretraining"
        );
        for g in &regimes {
            let n = rows
                .iter()
                .find(|r| &r.regime == g)
                .map_or(0, |r| r.n_train);
            s += &format!("{:>18}", format!("{g} (n {n})"));
        }
        s += "\n";
        let mut variants: Vec<&str> = Vec::new();
        for r in rows {
            if !variants.contains(&r.variant.as_str()) {
                variants.push(&r.variant);
            }
        }
        for v in variants {
            s += &format!("{v:<44}");
            for g in &regimes {
                let cell = rows
                    .iter()
                    .find(|r| r.variant == v && &r.regime == g)
                    .map_or("-".to_string(), |r| r.balanced_accuracy.clone());
                s += &format!("{cell:>18}");
            }
            s += "\n";
        }
    }
    if !align.is_empty() {
        s += "\nalignment (citrus ← mae-freq, largest regime): balanced accuracy | sine spectral error\n";
        for r in align {
            s += &format!(
                "{:<26}{:<9}{:>16} | {:.3}\n",
                r.dataset,
                r.alignment,
                r.balanced_accuracy,
                r.sine_spectral_error.unwrap_or(f64::NAN)
            );
        }
    }
    s
}

/// Balanced accuracy vs labelled windows, one panel per dataset: the fully fine-tuned
/// variants, or (`probe`) the linear probes.
fn draw_figure(path: &Path, sets: &[Vec<SummaryRow>], plan: &Plan, probe: bool) -> Result<()> {
    const PROBE: &str = ", linear probe";
    let panels = sets
        .iter()
        .filter_map(|rows| {
            let first = rows.first()?;
            let mut series: Vec<Series> = Vec::new();
            for r in rows.iter().filter(|r| r.variant.ends_with(PROBE) == probe) {
                let label = r.variant.trim_end_matches(PROBE).to_string();
                let p = (r.n_train as f64, r.balanced_accuracy_mean);
                match series.iter_mut().find(|s| s.label == label) {
                    Some(s) => s.points.push(p),
                    None => series.push(Series::new(label, vec![p], Style::Line)),
                }
            }
            for s in &mut series {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            Some(Panel {
                title: first.dataset.clone(),
                x_label: "labelled training windows".into(),
                y_label: "balanced accuracy".into(),
                x_log: true,
                series,
            })
        })
        .collect();
    draw(
        path,
        &Figure {
            name: "transfer".into(),
            title: if probe {
                "Linear probes of randomly initialised vs self-supervised encoders".into()
            } else {
                "Fine-tuning from scratch vs from self-supervised pretraining".into()
            },
            panels,
            note: format!(
                "mean over {} seeds; {} pretraining steps, {} fine-tuning steps; 128 Hz × 2 s windows",
                plan.seeds.len(),
                plan.pretrain_steps,
                plan.finetune.steps
            ),
        },
    )
}
