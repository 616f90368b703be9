//! Chains the stages (what `brainscale demo` runs), the maps stage over a dataset's subjects,
//! and the per-subject summary table.
use crate::fmri::align::{self, AlignOptions, Lag};
use crate::fmri::dataset::{self, synth, Dataset};
use crate::fmri::encode;
use crate::fmri::features::{self, ExtractorKind, FeaturesOptions};
use crate::fmri::maps::{self, SummaryRow, VoxelResults};
use crate::ridge::RidgeOptions;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Dataset name used in results rows and work folders: the dataset folder's name.
fn folder_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

/// Dataset name used in results rows.
pub fn dataset_name(ds: &Dataset) -> String {
    folder_name(&ds.root)
}

/// Maps stage over subjects: reads WORK/encode, writes WORK/maps/FEATURES/sub-XX/ and updates
/// WORK/summary.csv. Returns the rows.
pub fn maps_dataset(
    ds: &Dataset,
    work: &Path,
    feat: &str,
    subjects: &[String],
) -> Result<Vec<SummaryRow>> {
    let mut rows = Vec::new();
    for s in ds.select(subjects)? {
        let path = encode::encode_path(work, feat, &s.id);
        let res = VoxelResults::load(&path)
            .with_context(|| format!("sub-{}: run the encode stage first", s.id))?;
        let dir = work.join("maps").join(feat).join(format!("sub-{}", s.id));
        rows.push(match dataset::subject_space(s)? {
            dataset::Space::Voxels { mask, header } => maps::write_subject_maps(
                &dir,
                &dataset_name(ds),
                feat,
                &s.id,
                &header,
                &mask,
                &res,
            )?,
            dataset::Space::Parcels { n, atlas } => maps::write_parcel_maps(
                &dir,
                &dataset_name(ds),
                feat,
                &s.id,
                n,
                atlas.as_ref(),
                &res,
            )?,
        });
    }
    maps::upsert_summary(&work.join("summary.csv"), &rows)?;
    Ok(rows)
}

/// The table printed at the end of a run: each subject beside its ground-truth ceiling.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let opt = |v: Option<f64>| v.map_or("    -".to_string(), |x| format!("{x:5.3}"));
    let mut s = String::from(
        "subject  voxels  mean r  top10% r  r>0.1   | ceiling: mean r  top10% r | signal voxels: r / ceiling   no-signal r\n",
    );
    for r in rows {
        let ratio = match (r.signal_mean_r, r.signal_ceiling_mean_r) {
            (Some(a), Some(b)) if b > 0.0 => format!("{a:5.3} / {b:5.3} ({:3.0}%)", 100.0 * a / b),
            _ => "            -".into(),
        };
        s += &format!(
            "sub-{:<4} {:>6}  {:6.3}  {:8.3}  {:5.1}%  |          {}     {}   | {:>26}   {}\n",
            r.subject,
            r.voxels,
            r.mean_r,
            r.top10_mean_r,
            100.0 * r.frac_r_above_0_1,
            opt(r.ceiling_mean_r),
            opt(r.ceiling_top10_mean_r),
            ratio,
            opt(r.noise_mean_r),
        );
    }
    s
}

/// Options of `brainscale demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Display orientation and truncation choices for decoding the movies.
    pub decode: crate::fmri::video::DecodeFlags,
    pub size: synth::Size,
    pub seed: u64,
    pub dataset: PathBuf,
    pub work: PathBuf,
    pub extractor: ExtractorKind,
    pub pca: usize,
}

/// synth → decode → features → align → encode → maps, with timings; returns the rows.
pub fn demo(o: &DemoOptions) -> Result<Vec<SummaryRow>> {
    let t0 = Instant::now();
    let step = |name: &str, t: Instant| {
        eprintln!("  {name:<9} done in {:5.1} s", t.elapsed().as_secs_f64())
    };

    let t = Instant::now();
    let cfg = synth::SynthConfig::preset(o.size, o.seed);
    let sum = synth::generate(&cfg, &o.dataset)?;
    eprintln!(
        "dataset {}: {} subjects × {} runs × {} TRs (TR {} s), {:?} voxels{}",
        o.dataset.display(),
        cfg.subjects,
        cfg.runs,
        cfg.trs_per_run,
        cfg.tr,
        sum.voxels_per_subject,
        if sum.skipped { " (already there)" } else { "" }
    );
    step("synth", t);
    let ds = Dataset::open(&o.dataset)?;

    let gpt = if o.extractor == ExtractorKind::Gpt {
        // A small prior (VQ-VAE tokenizer + 2-layer GPT) trained on the dataset's own movies.
        let t = Instant::now();
        let dir = crate::fmri::pretrain::train_small_prior(
            &ds.movies(),
            &o.work.join("gpt-prior"),
            o.seed,
        )?;
        step("pretrain", t);
        Some(features::GptFeatureArgs {
            model: Some(dir),
            layers: vec![2],
            clip_stride: 1,
            hop: None,
            device: "cpu".into(),
        })
    } else {
        None
    };

    let t = Instant::now();
    let fopts = FeaturesOptions {
        extractor: o.extractor,
        pca: (o.extractor == ExtractorKind::Baseline).then_some(o.pca),
        fps: None,
        size: Some(cfg.frame_size as u32),
        gpt,
        decode: o.decode,
    };
    let fdir = features::run_stage(&ds, &o.work, &fopts)?;
    let feat = fdir.file_name().unwrap().to_string_lossy().into_owned();
    step("decode+features", t);

    let t = Instant::now();
    let aopts = AlignOptions {
        lag: if o.extractor == ExtractorKind::Groundtruth {
            Lag::Hrf
        } else {
            Lag::Fir(vec![1, 2, 3, 4])
        },
        max_mismatch_s: None,
    };
    align::align_dataset(&ds, &o.work, &feat, &aopts)?;
    step("align", t);

    let t = Instant::now();
    let plan = encode::SplitPlan::default();
    encode::encode_dataset(&ds, &o.work, &feat, &[], &plan, &RidgeOptions::default())?;
    step("encode", t);

    let t = Instant::now();
    let rows = maps_dataset(&ds, &o.work, &feat, &[])?;
    maps_figures(&ds, &o.work, &feat, &rows, &maps::FigureOptions::default())?;
    step("maps", t);
    eprintln!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(rows)
}

/// Publication-style maps (`r_statmap.png`) of the subjects of `rows` (from
/// [`maps_dataset`]): voxel data over the given background (resampled) or the subject's mean
/// EPI of its first run; parcels over their atlas. Subjects without either draw over the mask;
/// parcels without an atlas get no figure. Returns the files written.
pub fn maps_figures(
    ds: &Dataset,
    work: &Path,
    feat: &str,
    rows: &[SummaryRow],
    opts: &maps::FigureOptions,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for row in rows {
        let s = ds.subject(&row.subject)?;
        let res = VoxelResults::load(&encode::encode_path(work, feat, &s.id))?;
        let dir = work.join("maps").join(feat).join(format!("sub-{}", s.id));
        // Significance-thresholded (q) when encode wrote q-values, else the fixed |r|.
        let rule = maps::MapThreshold::choose(opts, &res);
        let (painted, level) = rule.apply(&res)?;
        match dataset::subject_space(s)? {
            dataset::Space::Voxels { mask, header } => {
                let bg = match (&opts.background, s.runs.first()) {
                    (Some(p), _) => Some((
                        maps::background_image(p, &header)?,
                        format!("{} (resampled)", p.display()),
                    )),
                    (None, Some(run)) => maps::mean_epi(&run.bold, mask.dims)?
                        .map(|v| (v, format!("mean EPI of run {}", run.id))),
                    (None, None) => None,
                };
                maps::write_subject_figure_as(
                    &dir,
                    row,
                    &header,
                    &mask,
                    &painted,
                    bg.as_ref().map(|(v, w)| (v, w.as_str())),
                    level,
                    &rule.describe(&res),
                )?;
                // r / repeat ceiling, on the voxels the r map paints (runs repeating a movie).
                if let Some(n) = &res.normalised_r {
                    let keep = |r: f64| r != 0.0 && r.abs() >= level as f64;
                    let v = ndarray::Zip::from(n).and(&painted).map_collect(|&n, &r| {
                        if keep(r) {
                            n
                        } else {
                            0.0
                        }
                    });
                    maps::write_normalised_figure(
                        &dir,
                        row,
                        &header,
                        &mask,
                        &v,
                        bg.as_ref().map(|(v, w)| (v, w.as_str())),
                        &rule.describe(&res),
                    )?;
                } else {
                    // No ceiling in the current results: drop a figure left by an earlier encode.
                    let stale = dir.join("normalised_r_statmap.png");
                    if stale.exists() {
                        std::fs::remove_file(&stale).map_err(|e| {
                            anyhow::anyhow!("{}: cannot remove stale figure: {e}", stale.display())
                        })?;
                    }
                }
            }
            dataset::Space::Parcels { atlas: Some(a), .. } => {
                maps::write_parcel_figure_as(&dir, row, &a, &painted, level, &rule.describe(&res))?;
            }
            dataset::Space::Parcels { atlas: None, .. } => continue,
        }
        files.push(dir.join("r_statmap.png"));
    }
    Ok(files)
}
