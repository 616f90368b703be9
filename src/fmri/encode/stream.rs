//! Streaming encode (`encode --stream`, `encode --voxel-shard k/K`, `encode merge`): the
//! design matrices (X, small) are held in memory and the BOLD (Y) is streamed block by block
//! from the voxel-major cache (`dataset::voxcache`) through the CV fit, the refit, the test
//! scores and the weight writer (`ridge::blocks`). Peak memory is X, the prepared X side,
//! one block of Y and the ridge's voxel chunks, whatever the voxel count; `--process-memory`
//! bounds all of it (`--max-memory` keeps its meaning in every encode mode: the ridge's
//! voxel-chunk budget, a share of the process budget here), and the CLI prints the peak
//! resident memory measured.
//!
//! Outputs are those of `encode` (WORK/encode/FEAT/sub-XX/ridge.safetensors, same tensors
//! and metadata, results per voxel equal to the in-memory fit's to rounding), except that
//! weights (`--save-weights`) always go to `weights.safetensors`, f32 [voxels, features]
//! (the `--stream-weights` layout). A shard writes `parts/part-k-of-K.safetensors` (and
//! `parts/weights-k-of-K.safetensors`): the same per-voxel tensors for its contiguous voxel
//! range, with metadata `shard`, `voxels` and `n_voxels`; `encode merge` checks and joins
//! them into the usual outputs.
use crate::core::io::{self, RowWriter, TensorFile};
use crate::core::memory::human_bytes;
use crate::core::stats;
use crate::exec::shards;
use crate::fmri::dataset::splits::SplitPlan;
use crate::fmri::dataset::voxcache::{self, VoxCache};
use crate::fmri::dataset::{Dataset, Subject};
use crate::fmri::encode::{
    self, constant_in_test, encode_path, prepare_run, warn_constant, FeatureSet, PerVoxel,
    PermOptions,
};
use crate::fmri::significance::{self as sig, NullCounts, Permutations, Significance};
use crate::ridge::blocks::{fit_cv_blocks, prepared_bytes, Design, VoxelBlocks};
use crate::ridge::{self, RidgeOptions};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array1, Array2};
use std::path::{Path, PathBuf};

pub use crate::exec::shards::Shard;

/// Metadata of the streamed weights files (rows are voxels).
const WEIGHTS_META: &[(&str, &str)] = &[("layout", "voxels x features")];

/// How the streamed encode reads and splits its work.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Folder holding the subjects' voxel caches (default WORK/voxcache).
    pub cache_root: Option<PathBuf>,
    /// Voxels per cache block.
    pub block_voxels: usize,
    pub shard: Option<Shard>,
    /// Bound on the whole process's memory, bytes (`--process-memory`; default: half the
    /// available RAM). `RidgeOptions::max_memory` stays the ridge's own voxel-chunk budget.
    pub process_memory: Option<u64>,
    pub progress: bool,
    /// The permutation null of the test r (the same permutations in every block and shard).
    pub perm: PermOptions,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            cache_root: None,
            block_voxels: voxcache::DEFAULT_BLOCK,
            shard: None,
            process_memory: None,
            progress: false,
            perm: PermOptions::default(),
        }
    }
}

/// What a streamed encode of one subject did.
#[derive(Debug, Clone)]
pub struct StreamedFit {
    /// Test r of the voxels fitted (the shard's range).
    pub test_r: Array1<f64>,
    /// Voxel range fitted and the subject's voxel count.
    pub voxels: (usize, usize),
    pub n_voxels: usize,
    /// The per-voxel output written (ridge.safetensors or the shard's part).
    pub path: PathBuf,
    pub flops: f64,
    pub n_blocks: usize,
    /// Voxels per ridge block (a whole number of cache blocks).
    pub block_voxels: usize,
    pub runs_converted: usize,
}

/// Training and test rows of Y for a voxel range, read from the cache run by run, trimmed
/// and z-scored per run as `encode` does, copied into one array.
struct CacheBlocks<'a> {
    cache: &'a VoxCache,
    train: Vec<usize>,
    test: Vec<usize>,
    plan: &'a SplitPlan,
    labels: Vec<String>,
}

impl CacheBlocks<'_> {
    fn rows(&self, run: usize) -> usize {
        self.cache.runs[run].1 - self.plan.trim_start - self.plan.trim_end
    }

    fn fill(&self, runs: &[usize], j0: usize, j1: usize) -> Result<Array2<f32>> {
        let n: usize = runs.iter().map(|&i| self.rows(i)).sum();
        let mut out = Array2::<f32>::zeros((n, j1 - j0));
        let mut r0 = 0;
        for &i in runs {
            let y = self.cache.read(i, j0, j1)?;
            // As `encode`: trim, then z-score each run's columns.
            let y = prepare_run(&y, self.plan, &self.labels[i])?;
            let k = y.nrows();
            out.slice_mut(s![r0..r0 + k, ..]).assign(&y);
            r0 += k;
        }
        Ok(out)
    }
}

impl VoxelBlocks for CacheBlocks<'_> {
    fn n_voxels(&self) -> usize {
        self.cache.n_columns
    }
    fn read(&mut self, j0: usize, j1: usize) -> Result<(Array2<f32>, Array2<f32>)> {
        Ok((
            self.fill(&self.train, j0, j1)?,
            self.fill(&self.test, j0, j1)?,
        ))
    }
}

/// Where shard `k` of `n` writes its per-voxel part (and its weights part).
pub fn part_paths(
    work: &Path,
    feat: &str,
    subject: &str,
    k: usize,
    n: usize,
) -> (PathBuf, PathBuf) {
    let dir = encode_path(work, feat, subject).with_file_name("parts");
    (
        shards::part_path(&dir, k, n),
        dir.join(format!("weights-{k}-of-{n}.safetensors")),
    )
}

/// Streamed encode of one subject (see the module docs). Converts the runs into the voxel
/// cache first when needed (resumable). Errors: those of `encode` (designs, split, BOLD),
/// a process budget (`--process-memory`) too small for X plus one cache block, I/O errors
/// naming the file.
pub fn encode_subject_streamed(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    feat: &str,
    plan: &SplitPlan,
    ropts: &RidgeOptions,
    so: &StreamOptions,
) -> Result<StreamedFit> {
    let dir = match &so.cache_root {
        Some(root) => root.join(format!("sub-{}", s.id)),
        None => voxcache::default_dir(work, &s.id),
    };
    let (cache, rep) = voxcache::build(s, &dir, so.block_voxels, so.progress)
        .with_context(|| format!("voxel cache of sub-{} in {}", s.id, dir.display()))?;

    // X in memory (training rows with CV groups, then test rows); Y stays in the cache.
    let d = encode::assemble_designs(work, s, &[FeatureSet::single(feat)], plan, &|i| {
        cache.runs[i].1
    })?;
    let (x_train, x_test) = (&d.x_train, &d.x_test);
    let design = Design {
        x_train: x_train.view(),
        groups: &d.groups,
        x_test: x_test.view(),
    };

    // Shard: a contiguous share of the cache blocks.
    let nb = cache.n_blocks();
    let v_all = cache.n_columns;
    let (b0, b1) = match so.shard {
        Some(sh) => sh.blocks(nb).with_context(|| {
            format!("sub-{}: {v_all} voxels in blocks of {}", s.id, cache.block)
        })?,
        None => (0, nb),
    };
    if b0 == b1 {
        bail!("sub-{}: no voxel to fit", s.id);
    }
    let (v0, v1) = (cache.block_range(b0).0, cache.block_range(b1 - 1).1);

    // Memory: what is left of the process budget after what is resident now (X, libraries),
    // the prepared X side and the per-voxel outputs goes half to Y blocks, half to the
    // ridge's voxel chunks (never more than --max-memory, the ridge's own budget).
    let budget = process_budget(ropts, so);
    let (n, n_test) = (x_train.nrows(), x_test.nrows());
    let na = ropts.alphas.len() as u64;
    let resident = crate::core::memory::current_rss().unwrap_or(0);
    let prep = prepared_bytes(&design, ropts).unwrap_or(0);
    let outputs = (v1 - v0) as u64 * (8 * (na + 6));
    let used = resident + prep + outputs;
    let left = budget.saturating_sub(used);
    let per_voxel = 4 * (n + 2 * n_test) as u64 + 16 * na;
    let per_block = per_voxel * cache.block as u64;
    if left / 2 < per_block {
        bail!(
            "memory budget {} is too small: {} are in use (resident now {}, prepared features {}, \
             per-voxel outputs {}) and one cache block of {} voxels needs {} more (raise \
             --process-memory, or use a smaller --block-voxels)",
            human_bytes(budget),
            human_bytes(used),
            human_bytes(resident),
            human_bytes(prep),
            human_bytes(outputs),
            cache.block,
            human_bytes(2 * per_block)
        );
    }
    // One cache block per ridge block: the ridge chunks its voxels in blocks of this order
    // anyway (`voxcache::DEFAULT_BLOCK`), and smaller blocks keep memory low.
    let ranges: Vec<(usize, usize)> = (b0..b1).map(|b| cache.block_range(b)).collect();
    let share = prep + left / 2;
    let fit_opts = RidgeOptions {
        max_memory: Some(ropts.max_memory.map_or(share, |m| m.min(share))),
        ..ropts.clone()
    };

    let space = crate::fmri::dataset::subject_space(s)?;
    let truth = encode::test_truth(ds, s, plan, &d.is_test, &space)?;
    let nv = v1 - v0;
    let mut best_alpha = Array1::<f64>::zeros(nv);
    let mut test_r = Array1::<f64>::zeros(nv);
    let mut test_r2 = Array1::<f64>::zeros(nv);
    let mut test_constant = Array1::<u8>::zeros(nv);
    let mut ceiling = truth.as_ref().map(|_| Array1::<f64>::zeros(nv));
    let mut cv_scores: Option<Array2<f64>> = None;
    let mut alphas = vec![];
    // The permutation null, block by block: drawn once, so every block, shard and voxel
    // sees the same permutations (its memory: one block's predictions, already held).
    let skip_null =
        so.perm.n_perm == 0 || (!so.perm.required && !sig::applicable(&d.test_lengths, &so.perm));
    if so.perm.n_perm > 0 && skip_null {
        eprintln!("{}", encode::skipped_note(&s.id, &d.test_lengths, &so.perm));
    }
    let perms = match skip_null {
        true => None,
        false => Some(
            Permutations::new(&d.test_lengths, &so.perm)
                .with_context(|| format!("sub-{}: permutation null of the test r", s.id))?,
        ),
    };
    // Noise ceiling from repeated viewings of the test movie, block by block.
    let groups = encode::repeat_groups(s, &d);
    let mut repeat_ceiling = (!groups.is_empty()).then(|| Array1::<f64>::zeros(nv));
    let reps_src = CacheBlocks {
        cache: &cache,
        train: vec![],
        test: vec![],
        plan,
        labels: s.runs.iter().map(|r| r.label()).collect(),
    };
    // Block bootstrap of the whole subject's summaries: every voxel's resampled r,
    // [resamples, voxels] f32 (a shard writes its voxels' part as `boot_part_r`, with its
    // `null_top_r`, for the merge to summarise the whole subject).
    let mut boot_r = perms
        .is_some()
        .then(|| Array2::<f32>::zeros((crate::fmri::bootstrap::DEFAULT_RESAMPLES, nv)));
    let mut null = perms.as_ref().map(|p| NullCounts {
        r: Array1::zeros(nv),
        exceed: Array1::zeros(nv),
        max_null: Array1::from_elem(p.n_perm(), f64::NEG_INFINITY),
        top_null: Array2::zeros((sig::top_k(p.n_perm()), nv)),
    });
    let (n_const, mut n_test_const) = (std::cell::Cell::new(0usize), 0usize);
    let (part, wpart) = match so.shard {
        Some(sh) => part_paths(work, feat, &s.id, sh.k, sh.n),
        None => {
            let p = encode_path(work, feat, &s.id);
            let w = p.with_file_name("weights.safetensors");
            (p, w)
        }
    };
    let nf = x_train.ncols();
    let mut weights = match ropts.keep_weights {
        true => Some(RowWriter::create(&wpart, "weights", nv, nf, WEIGHTS_META)?),
        false => None,
    };
    let bar = if so.progress {
        crate::core::progress::progress(ranges.len() as u64, &format!("sub-{} blocks", s.id))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut src = CacheBlocks {
        cache: &cache,
        train: d.train_runs.clone(),
        test: d.test_runs.clone(),
        plan,
        labels: s.runs.iter().map(|r| r.label()).collect(),
    };
    let summary = fit_cv_blocks(
        &design,
        &mut src,
        &ranges,
        &fit_opts,
        &mut |j0, mut fit, y_test| {
            let (a, b) = (j0 - v0, j0 - v0 + fit.test_r.len());
            best_alpha.slice_mut(s![a..b]).assign(&fit.best_alpha);
            test_r.slice_mut(s![a..b]).assign(&fit.test_r);
            test_r2.slice_mut(s![a..b]).assign(&fit.test_r2);
            let tc = constant_in_test(&y_test.to_owned(), &fit.constant_voxels);
            n_test_const += tc.iter().filter(|&&f| f == 1).count();
            test_constant.slice_mut(s![a..b]).assign(&tc);
            n_const.set(n_const.get() + fit.constant_voxels.len());
            if let (Some(c), Some(t)) = (ceiling.as_mut(), truth.as_ref()) {
                let sb = t.signal.slice(s![.., j0..j0 + (b - a)]);
                c.slice_mut(s![a..b])
                    .assign(&stats::pearson_columns(sb, y_test));
            }
            if let (Some(acc), Some(p)) = (null.as_mut(), perms.as_ref()) {
                let c = sig::block_null(fit.test_pred.view(), y_test, p)?;
                acc.r.slice_mut(s![a..b]).assign(&c.r);
                acc.exceed.slice_mut(s![a..b]).assign(&c.exceed);
                acc.top_null.slice_mut(s![.., a..b]).assign(&c.top_null);
                for (m, x) in acc.max_null.iter_mut().zip(&c.max_null) {
                    *m = m.max(*x);
                }
            }
            if let Some(br) = boot_r.as_mut() {
                let r = crate::fmri::bootstrap::resampled_r(
                    fit.test_pred.view(),
                    y_test,
                    &d.test_lengths,
                    crate::fmri::bootstrap::DEFAULT_RESAMPLES,
                    &so.perm,
                )?;
                br.slice_mut(s![.., a..b]).assign(&r);
            }
            if let Some(rc) = repeat_ceiling.as_mut() {
                let c = encode::repeat_ceiling(&s.id, &groups, &mut |i| {
                    reps_src.fill(&[i], j0, j0 + (b - a))
                })?
                .expect("groups");
                rc.slice_mut(s![a..b]).assign(&c);
            }
            if let Some(cv) = fit.cv_scores.take() {
                let all = cv_scores.get_or_insert_with(|| Array2::zeros((cv.nrows(), nv)));
                all.slice_mut(s![.., a..b]).assign(&cv);
            }
            if let (Some(w), Some(wb)) = (weights.as_mut(), fit.weights.take()) {
                w.rows(wb.t())?;
            }
            alphas = fit.alphas.clone();
            bar.inc(1);
            Ok(())
        },
    )
    .with_context(|| format!("ridge for sub-{}", s.id))?;
    bar.finish_and_clear();
    if let Some(w) = weights {
        w.finish()?;
    }
    let file = part
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    warn_constant(&s.id, n_const.get(), n_test_const, nv, &file);

    let sig_all = null
        .as_ref()
        .map(|c| Significance::from_counts(c, so.perm.n_perm));
    let tensors = PerVoxel {
        best_alpha,
        test_r: test_r.clone(),
        test_r2,
        test_constant: Some(test_constant),
        alphas,
        ceiling_r: ceiling,
        has_signal: truth.map(|t| t.has_signal.slice(s![v0..v1]).to_owned()),
        cv_scores,
        weights: None,
        voxel_ijk: cache
            .voxel_ijk
            .as_ref()
            .map(|ijk| ijk.slice(s![v0..v1, ..]).to_owned()),
        held: encode::HeldOut::new(
            &test_r,
            sig_all.clone(),
            repeat_ceiling,
            boot_r.as_ref().filter(|_| so.shard.is_none()).map(|r| {
                let thr = sig_all
                    .as_ref()
                    .zip(null.as_ref())
                    .map(|(g, c)| sig::q05_thresholds(c, &g.q, so.perm.n_perm));
                crate::fmri::bootstrap::summaries(r, thr.as_ref())
            }),
        ),
    }
    .outputs();
    let mut tensors = tensors;
    if so.shard.is_some() {
        if let (Some(br), Some(c)) = (boot_r, null) {
            tensors.push(("boot_part_r", io::Tensor::F32(br.into_dyn())));
            tensors.push(("null_top_r", io::Tensor::F32(c.top_null.into_dyn())));
        }
    }
    let mut meta = encode::output_metadata(
        d.test_ids(s),
        feat,
        plan,
        encode::inputs_key(s, work, feat, plan, ropts)?,
    )?;
    encode::add_perm_metadata(&mut meta, &so.perm);
    if let Some(sh) = so.shard {
        meta.extend(sh.metadata(v0, v1, v_all));
        meta.insert("weights".to_string(), ropts.keep_weights.to_string());
    }
    io::write_tensors(&part, tensors, meta)?;
    Ok(StreamedFit {
        test_r,
        voxels: (v0, v1),
        n_voxels: v_all,
        path: part,
        flops: summary.flops,
        n_blocks: summary.n_blocks,
        block_voxels: cache.block.min(v1 - v0),
        runs_converted: rep.converted,
    })
}

/// The whole-process budget of a streamed encode: `--process-memory`, else half the
/// available RAM (16 GiB with the torch backend on CUDA), as the ridge's default budget.
pub fn process_budget(ropts: &RidgeOptions, so: &StreamOptions) -> u64 {
    so.process_memory.unwrap_or_else(|| {
        ridge::memory_budget(&RidgeOptions {
            max_memory: None,
            ..ropts.clone()
        })
    })
}

/// Joins the `n` shard parts of a subject into ridge.safetensors (and weights.safetensors
/// when the parts have weights), as one streamed run writes them. Refuses a missing part, a
/// part of another shard count, from other inputs or options, or with a voxel range that
/// does not follow the previous part's, naming the file. Returns the merged path.
pub fn merge_parts(work: &Path, feat: &str, subject: &str, n: usize) -> Result<PathBuf> {
    let paths: Vec<PathBuf> = (0..n)
        .map(|k| part_paths(work, feat, subject, k, n).0)
        .collect();
    let layout = shards::Layout {
        per_voxel: &[
            ("best_alpha", 0),
            ("test_r", 0),
            ("test_r2", 0),
            ("ceiling_r", 0),
            ("cv_scores", 1),
            ("test_constant", 0),
            ("has_signal", 0),
            ("voxel_ijk", 0),
            ("test_p", 0),
            ("repeat_ceiling_r", 0),
            ("normalised_r", 0),
            ("boot_part_r", 1),
            ("null_top_r", 1),
        ],
        shared: &["alphas"],
        same: &[
            "inputs",
            "features",
            "split",
            "test_runs",
            "weights",
            "permutations",
            "perm_block",
            "perm_seed",
        ],
    };
    let merged = shards::merge(&paths, &layout, &|k| {
        format!("rerun the shards' encode command (same --block-voxels and options) with `--voxel-shard {k}/{n}`")
    })
    .with_context(|| format!("sub-{subject}: merging {n} parts"))?;
    let out = encode_path(work, feat, subject);
    let mut tensors = merged.tensors;
    merge_significance(&paths, &mut tensors)?;
    let mut meta = merged.metadata;
    if meta.remove("weights").as_deref() == Some("true") {
        merge_weights(work, feat, subject, n, merged.n_voxels)?;
    }
    io::write_tensors(&out, tensors, meta)?;
    Ok(out)
}

/// The significance of merged parts: each part's p stands (the same permutations), while
/// the BH q (over all voxels) and the FWE p (against the maximum over all voxels, the
/// elementwise maximum of the parts' `null_max_r`) are recomputed over the whole subject.
fn merge_significance(paths: &[PathBuf], tensors: &mut Vec<(String, io::Tensor)>) -> Result<()> {
    let get = |tensors: &Vec<(String, io::Tensor)>, name: &str| -> Option<Array1<f64>> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| match t {
                io::Tensor::F64(a) => a.clone().into_dimensionality().ok(),
                _ => None,
            })
    };
    let (Some(p), Some(r)) = (get(tensors, "test_p"), get(tensors, "test_r")) else {
        return Ok(());
    };
    let mut max_null: Option<Array1<f64>> = None;
    for path in paths {
        let m = io::into_1d(
            TensorFile::open(path)?.f64("null_max_r")?,
            &format!("{}: null_max_r", path.display()),
        )?;
        match &mut max_null {
            None => max_null = Some(m),
            Some(acc) if acc.len() == m.len() => acc.zip_mut_with(&m, |a, b| *a = a.max(*b)),
            Some(acc) => bail!(
                "{}: {} permutations, part 0 has {}",
                path.display(),
                m.len(),
                acc.len()
            ),
        }
    }
    let max_null = max_null.expect("at least one part");
    let s = Significance {
        q: sig::bh_q(&p),
        fwe_p: sig::fwe_p(&r, &max_null),
        p,
        null_max_r: max_null,
    };
    // The bootstrap over the whole subject from the parts' resampled r, with the thresholds
    // of the merged q (as one streamed run computes them).
    let f32_2d = |name: &str| -> Option<ndarray::Array2<f32>> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| match t {
                io::Tensor::F32(a) => a.clone().into_dimensionality().ok(),
                _ => None,
            })
    };
    let boot = match (f32_2d("boot_part_r"), f32_2d("null_top_r")) {
        (Some(br), Some(top)) => {
            let n_perm = s.null_max_r.len();
            let thr = sig::q05_thresholds_from(&s.p, &s.q, top.view(), n_perm);
            Some(crate::fmri::bootstrap::summaries(&br, Some(&thr)))
        }
        _ => None,
    };
    tensors.retain(|(n, _)| !["test_p", "boot_part_r", "null_top_r"].contains(&n.as_str()));
    if let Some(b) = boot {
        tensors.extend(b.tensors().into_iter().map(|(n, t)| (n.to_string(), t)));
    }
    tensors.extend(s.tensors().into_iter().map(|(n, t)| (n.to_string(), t)));
    Ok(())
}

/// [`merge_parts`] for every subject in `subjects`, after checking that every subject's `n`
/// parts are there, so that a missing part leaves no subject merged (error names the part).
pub fn merge_subjects(
    work: &Path,
    feat: &str,
    subjects: &[&Subject],
    n: usize,
) -> Result<Vec<PathBuf>> {
    for s in subjects {
        for k in 0..n {
            let (p, _) = part_paths(work, feat, &s.id, k, n);
            if !p.exists() {
                bail!(
                    "sub-{}: part {k} of {n} is missing: {} (rerun the shards' encode command \
                     with `--voxel-shard {k}/{n}`); no subject was merged",
                    s.id,
                    p.display()
                );
            }
        }
    }
    subjects
        .iter()
        .map(|s| merge_parts(work, feat, &s.id, n))
        .collect()
}

/// Concatenates the shards' weights parts [voxels of the part, features] into
/// weights.safetensors, copying rows without holding them.
fn merge_weights(work: &Path, feat: &str, subject: &str, n: usize, total: usize) -> Result<()> {
    let out = encode_path(work, feat, subject).with_file_name("weights.safetensors");
    let mut w: Option<RowWriter> = None;
    for k in 0..n {
        let (_, wp) = part_paths(work, feat, subject, k, n);
        let f = std::fs::File::open(&wp).with_context(|| {
            format!(
                "sub-{subject}: weights of part {k} of {n} are missing: {}",
                wp.display()
            )
        })?;
        let mut part = io::TensorReader::new(f, &wp, "weights")?;
        let shape = part.shape.clone();
        if shape.len() != 2 {
            bail!("{}: no 2-D tensor `weights`", wp.display());
        }
        let writer = match &mut w {
            Some(w) => w,
            None => w.insert(RowWriter::create(
                &out,
                "weights",
                total,
                shape[1],
                WEIGHTS_META,
            )?),
        };
        if shape[1] != writer.cols() {
            bail!(
                "{}: {} features, part 0 has {}",
                wp.display(),
                shape[1],
                writer.cols()
            );
        }
        writer
            .copy_rows(part.data(), shape[0])
            .with_context(|| format!("copying {}", wp.display()))?;
    }
    w.expect("n >= 1").finish()
}

/// One subject's streamed fit and its wall time in seconds.
pub struct TimedFit {
    pub subject: String,
    pub fit: StreamedFit,
    pub seconds: f64,
}

/// `encode --stream` / `--voxel-shard` over subjects: fits each in turn (see
/// [`encode_subject_streamed`]) and returns the fits with their wall times.
pub fn run(
    ds: &Dataset,
    work: &Path,
    feat: &str,
    subjects: &[&Subject],
    plan: &SplitPlan,
    ropts: &RidgeOptions,
    so: &StreamOptions,
) -> Result<Vec<TimedFit>> {
    encode::over_subjects(subjects, "encode (stream)", false, |s| {
        let t = std::time::Instant::now();
        let fit = encode_subject_streamed(ds, s, work, feat, plan, ropts, so)?;
        Ok(TimedFit {
            subject: s.id.clone(),
            fit,
            seconds: t.elapsed().as_secs_f64(),
        })
    })
}

/// The shards (0..n) whose part is missing for some subject, or was fitted from other inputs
/// or options than these: what `encode --slurm-shards` submits.
pub fn missing_shards(
    subjects: &[&Subject],
    work: &Path,
    feat: &str,
    plan: &SplitPlan,
    ropts: &RidgeOptions,
    n: usize,
) -> Result<Vec<usize>> {
    if n == 0 {
        bail!("--slurm-shards must be at least 1");
    }
    let mut out = vec![];
    for k in 0..n {
        for s in subjects {
            let (p, _) = part_paths(work, feat, &s.id, k, n);
            let key = encode::inputs_key(s, work, feat, plan, ropts)?;
            let fresh = TensorFile::open(&p)
                .map(|f| f.metadata().get("inputs") == Some(&key))
                .unwrap_or(false);
            if !fresh {
                out.push(k);
                break;
            }
        }
    }
    Ok(out)
}
