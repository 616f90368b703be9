//! Flags of the per-voxel statistics: the permutation null of `encode` and the threshold of
//! `maps` figures (flattened into their commands in `fmri`).
use crate::fmri::maps::FigureOptions;
use crate::fmri::significance::PermOptions;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PermFlags {
    /// Significance of each voxel's test r: permutations of the test runs' blocks (the
    /// same for every voxel); p, BH q and FWE p are written beside test_r (0: none). Default
    /// 1000, skipped with a warning when the test runs hold fewer than 4 blocks; given
    /// explicitly, such runs are an error.
    #[arg(long, value_name = "P")]
    pub permutations: Option<usize>,
    /// Block length of the permutations, in TRs (default 10, after Huth et al. 2016; 1 =
    /// i.i.d. shuffles, which ignore the BOLD's autocorrelation).
    #[arg(long, value_name = "TRS")]
    pub perm_block: Option<usize>,
    /// Seed of the permutations.
    #[arg(long, default_value_t = 0)]
    pub perm_seed: u64,
}

impl PermFlags {
    /// The permutation null's settings.
    pub fn options(&self) -> PermOptions {
        let d = PermOptions::default();
        PermOptions {
            n_perm: self.permutations.unwrap_or(d.n_perm),
            block: self.perm_block.unwrap_or(d.block),
            seed: self.perm_seed,
            required: self.permutations.is_some_and(|p| p > 0) || self.perm_block.is_some(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct FigureFlags {
    /// r_statmap.png: paint only voxels with BH q below this (block-permutation null of
    /// encode); results without q-values fall back to --threshold.
    #[arg(long, default_value_t = 0.05, value_name = "Q")]
    pub q: f64,
    /// r_statmap.png: threshold at a fixed |r| instead of by significance (|r| below this is
    /// not painted; default 0.1 when the results hold no q-values).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// r_statmap.png: an anatomical NIfTI drawn under the map (resampled to its grid);
    /// default: the subject's mean EPI (the atlas for parcels).
    #[arg(long)]
    pub background: Option<PathBuf>,
}

impl FigureFlags {
    /// The figure options; an error for a q level outside (0, 1).
    pub fn options(&self) -> Result<FigureOptions> {
        if !(self.q > 0.0 && self.q < 1.0) {
            bail!("--q {}: expected a level between 0 and 1", self.q);
        }
        Ok(FigureOptions {
            q: self.threshold.is_none().then_some(self.q),
            threshold: self.threshold.unwrap_or(0.1),
            background: self.background.clone(),
        })
    }
}
