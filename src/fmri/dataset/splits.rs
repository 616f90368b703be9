//! Which runs train and which test, and how training is cross-validated, as movie-fMRI studies
//! do it: by Friends season (season 3 held out in the CNeuroMod baseline; season 7 is the
//! Algonauts 2025 test set), by explicit run lists (a TOML split file), with CV folds grouped by
//! episode (GroupKFold-like, k configurable) or leave-one-episode-out, and a few TRs excluded at
//! each run's start and end. Runs that show the same movie file (repeated viewings, e.g. BIDS
//! sidecars naming one `StimulusFile` for several runs, or `dataset synth --repeat-test`) count
//! as one episode: they test together, or train in one CV group ([`stimulus_groups`]).
//!
//! A split file (every field optional):
//! ```toml
//! test_seasons = [3]          # or test_runs = ["s01e02a", "ses-007_task-s01e03b", ...]
//! exclude_seasons = [7]       # never used
//! train_seasons = [1, 2]      # only these train (default: every run not tested/excluded)
//! cv_folds = 5                # GroupKFold over episodes; absent: leave one episode out
//! trim_start = 5              # TRs dropped at each run's start ...
//! trim_end = 5                # ... and end (design rows and BOLD alike)
//! ```
use crate::fmri::dataset::{Run, Subject};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitPlan {
    /// Runs used only for the final test (run id, key or episode key). With no test runs and no
    /// test seasons, each subject's last run tests, with the rest of its episode and every run
    /// that shows its movie again ([`stimulus_groups`]).
    pub test_runs: Vec<String>,
    /// Friends seasons held out for the test.
    pub test_seasons: Vec<u32>,
    /// When not empty, only these runs train.
    pub train_runs: Vec<String>,
    /// When not empty, only runs of these seasons train.
    pub train_seasons: Vec<u32>,
    /// Runs and seasons used neither for training nor for testing.
    pub exclude_runs: Vec<String>,
    pub exclude_seasons: Vec<u32>,
    /// GroupKFold over episodes with this many folds; None: leave one episode out.
    pub cv_folds: Option<usize>,
    /// TRs excluded at the start and the end of every run.
    pub trim_start: usize,
    pub trim_end: usize,
}

/// Per run (in `runs`' order), the group of runs that must stay on one side of a split: the
/// runs of one episode group ([`Run::episode_group`]: the halves of a Friends episode, the
/// viewings of a Movie10 chunk) joined with every run that shows the same movie file (the same
/// path: repeated viewings named by their stimulus). A group is named by the smallest episode
/// group among its runs, so without shared movies the names are the episode groups.
pub fn stimulus_groups(runs: &[Run]) -> Vec<String> {
    let eg: Vec<String> = runs.iter().map(Run::episode_group).collect();
    // Union-find over runs; O(runs²) comparisons, a few hundred runs at most.
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for (i, (ri, ei)) in runs.iter().zip(&eg).enumerate() {
        for j in 0..i {
            if *ei == eg[j] || ri.movie == runs[j].movie {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut name: BTreeMap<usize, String> = BTreeMap::new();
    for (i, ei) in eg.iter().enumerate() {
        let e = name
            .entry(root(&mut parent, i))
            .or_insert_with(|| ei.clone());
        if ei < e {
            *e = ei.clone();
        }
    }
    (0..runs.len())
        .map(|i| name[&root(&mut parent, i)].clone())
        .collect()
}

/// A run's role in a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Train,
    Test,
    Unused,
}

/// A split resolved for one subject.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Per run, in the subject's order.
    pub roles: Vec<Role>,
    /// Per run: the CV group (fold index with cv_folds, else episode-group index); only
    /// meaningful for training runs.
    pub cv_group: Vec<usize>,
    pub n_groups: usize,
}

impl SplitPlan {
    /// Reads a TOML split file (unknown fields are errors, so typos do not pass silently).
    pub fn from_toml(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading split file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: not a valid split file", path.display()))
    }

    /// Fills fields left empty here from `other` (command-line flags over a split file).
    pub fn or(mut self, other: &SplitPlan) -> Self {
        macro_rules! fill {
            ($($f:ident),*) => {$( if self.$f.is_empty() { self.$f = other.$f.clone(); } )*};
        }
        fill!(
            test_runs,
            test_seasons,
            train_runs,
            train_seasons,
            exclude_runs,
            exclude_seasons
        );
        self.cv_folds = self.cv_folds.or(other.cv_folds);
        if self.trim_start == 0 {
            self.trim_start = other.trim_start;
        }
        if self.trim_end == 0 {
            self.trim_end = other.trim_end;
        }
        self
    }

    /// Roles and CV groups for a subject's runs, with a clear error for names that match no
    /// run, seasons without runs, overlaps and too few training groups.
    pub fn resolve(&self, s: &Subject) -> Result<Resolved> {
        let runs = &s.runs;
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        let check_names = |names: &[String], what: &str| -> Result<()> {
            for t in names {
                if !runs.iter().any(|r| r.matches(t)) {
                    let shown: Vec<&str> = ids.iter().take(12).copied().collect();
                    bail!(
                        "sub-{}: {what} '{t}' does not exist (runs: {}{})",
                        s.id,
                        shown.join(", "),
                        if ids.len() > shown.len() { ", ..." } else { "" }
                    );
                }
            }
            Ok(())
        };
        check_names(&self.test_runs, "test run")?;
        check_names(&self.train_runs, "training run")?;
        check_names(&self.exclude_runs, "excluded run")?;
        let present: Vec<u32> = {
            let mut v: Vec<u32> = runs.iter().filter_map(Run::season).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for (list, what) in [
            (&self.test_seasons, "test"),
            (&self.train_seasons, "training"),
            (&self.exclude_seasons, "excluded"),
        ] {
            for x in list {
                if !present.contains(x) {
                    let p: Vec<String> = present.iter().map(u32::to_string).collect();
                    bail!(
                        "sub-{}: {what} season {x} has no run (seasons present: {})",
                        s.id,
                        if p.is_empty() {
                            "none: no run has a Friends sXXeYY key".into()
                        } else {
                            p.join(", ")
                        }
                    );
                }
            }
        }
        let in_names = |r: &Run, names: &[String]| names.iter().any(|n| r.matches(n));
        let in_seasons =
            |r: &Run, seasons: &[u32]| r.season().is_some_and(|x| seasons.contains(&x));
        // Default test set: the last run's episode (both halves of a Friends episode) and every
        // run showing its movie again.
        let group = stimulus_groups(runs);
        let default_test = self.test_runs.is_empty() && self.test_seasons.is_empty();
        let last_group = group.last().cloned().unwrap_or_default();
        let mut roles = Vec::with_capacity(runs.len());
        for (r, g) in runs.iter().zip(&group) {
            let excluded = in_names(r, &self.exclude_runs) || in_seasons(r, &self.exclude_seasons);
            let test = if default_test {
                *g == last_group
            } else {
                in_names(r, &self.test_runs) || in_seasons(r, &self.test_seasons)
            };
            let train_listed = (self.train_runs.is_empty() || in_names(r, &self.train_runs))
                && (self.train_seasons.is_empty() || in_seasons(r, &self.train_seasons));
            let explicitly_train = !self.train_runs.is_empty() && in_names(r, &self.train_runs);
            if test && explicitly_train {
                bail!(
                    "sub-{}: run '{}' is listed both for training and for testing",
                    s.id,
                    r.id
                );
            }
            roles.push(if excluded {
                Role::Unused
            } else if test {
                Role::Test
            } else if train_listed {
                Role::Train
            } else {
                Role::Unused
            });
        }
        if !roles.contains(&Role::Test) {
            bail!("sub-{}: the split leaves no test run", s.id);
        }
        // Episodes must not straddle train and test (e.g. s01e02a trains, s01e02b tests), nor
        // may a movie (one viewing trains, another tests).
        let mut side: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for (g, role) in group.iter().zip(&roles) {
            let e = side.entry(g.as_str()).or_default();
            e.0 |= *role == Role::Train;
            e.1 |= *role == Role::Test;
        }
        if let Some((g, _)) = side.iter().find(|(_, (a, b))| *a && *b) {
            let runs_of: Vec<&str> = runs
                .iter()
                .zip(&group)
                .filter(|(_, h)| h == g)
                .map(|(r, _)| r.id.as_str())
                .collect();
            bail!(
                "sub-{}: episode {g} has runs both in training and in the test set (runs {}: halves \
                 of one episode, or viewings of one movie; hold out all of them)",
                s.id,
                runs_of.join(", ")
            );
        }
        // CV groups over training episodes.
        let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
        for ((r, g), role) in runs.iter().zip(&group).zip(&roles) {
            if *role == Role::Train {
                *sizes.entry(g.clone()).or_default() += r.n_volumes;
            }
        }
        let n_episodes = sizes.len();
        if n_episodes < 2 {
            bail!(
                "sub-{}: cross-validation needs at least 2 training runs besides the test runs (the split leaves {} training episode(s))",
                s.id,
                n_episodes
            );
        }
        let group_of: BTreeMap<String, usize> = match self.cv_folds {
            Some(k) => {
                if k < 2 || k > n_episodes {
                    bail!(
                        "sub-{}: cv_folds must be in 2..={n_episodes} (training episodes), got {k}",
                        s.id
                    );
                }
                group_k_fold(&sizes, k)
            }
            None => sizes
                .keys()
                .enumerate()
                .map(|(i, g)| (g.clone(), i))
                .collect(),
        };
        let cv_group = group
            .iter()
            .map(|g| group_of.get(g).copied().unwrap_or(usize::MAX))
            .collect();
        Ok(Resolved {
            roles,
            cv_group,
            n_groups: self.cv_folds.unwrap_or(n_episodes),
        })
    }
}

/// scikit-learn's GroupKFold assignment: groups by decreasing size (ties by name), each to the
/// fold with the fewest rows so far (ties to the lowest fold). Deterministic.
pub fn group_k_fold(sizes: &BTreeMap<String, usize>, k: usize) -> BTreeMap<String, usize> {
    let mut order: Vec<(&String, &usize)> = sizes.iter().collect();
    order.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut load = vec![0usize; k];
    let mut out = BTreeMap::new();
    for (g, &n) in order {
        let f = (0..k).min_by_key(|&f| (load[f], f)).unwrap();
        load[f] += n;
        out.insert(g.clone(), f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmri::dataset::{Layout, RunSource};

    fn run(key: &str, n: usize) -> Run {
        let ep = crate::fmri::dataset::entity(key, "task").unwrap();
        Run {
            id: ep.clone(),
            task: ep.clone(),
            bold: "x.h5".into(),
            movie: format!("{key}.mkv").into(),
            tr: 1.49,
            n_volumes: n,
            key: key.into(),
            episode: ep,
            source: RunSource::Hdf5 {
                dataset: key.into(),
            },
        }
    }

    fn subject(keys: &[(&str, usize)]) -> Subject {
        Subject {
            id: "01".into(),
            layout: Layout::Hdf5,
            mask: None,
            atlas: None,
            n_parcels: Some(4),
            confound_columns: vec![],
            runs: keys.iter().map(|(k, n)| run(k, *n)).collect(),
        }
    }

    #[test]
    fn season_split_groups_episode_halves() {
        use Role::*;
        let s = subject(&[
            ("ses-001_task-s01e01a", 10),
            ("ses-001_task-s01e01b", 10),
            ("ses-002_task-s01e02a", 10),
            ("ses-002_task-s01e02b", 12),
            ("ses-003_task-s02e01a", 10),
            ("ses-004_task-s03e01a", 10),
            ("ses-004_task-s03e01b", 10),
        ]);
        let plan = SplitPlan {
            test_seasons: vec![3],
            ..Default::default()
        };
        let r = plan.resolve(&s).unwrap();
        assert_eq!(r.roles, vec![Train, Train, Train, Train, Train, Test, Test]);
        // Leave one episode out: s01e01 (a, b together), s01e02, s02e01.
        assert_eq!(&r.cv_group[..5], &[0, 0, 1, 1, 2]);
        // GroupKFold with 2 folds: s01e02 (22 rows) → fold 0, s01e01 (20) → fold 1, s02e01 (10) → fold 1.
        let r = SplitPlan {
            cv_folds: Some(2),
            ..plan.clone()
        }
        .resolve(&s)
        .unwrap();
        assert_eq!(&r.cv_group[..5], &[1, 1, 0, 0, 1]);
        assert!(SplitPlan {
            cv_folds: Some(4),
            ..plan.clone()
        }
        .resolve(&s)
        .unwrap_err()
        .to_string()
        .contains("2..=3"));
        // Season 2 excluded, season 3 tests: only 2 training episodes remain.
        let r = SplitPlan {
            exclude_seasons: vec![2],
            ..plan.clone()
        }
        .resolve(&s)
        .unwrap();
        assert_eq!(r.roles[4], Unused);
        let e = SplitPlan {
            test_seasons: vec![7],
            ..Default::default()
        }
        .resolve(&s)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("season 7 has no run") && e.contains("1, 2, 3"),
            "{e}"
        );
        // Half an episode in the test set is refused.
        let e = SplitPlan {
            test_runs: vec!["s01e01b".into()],
            ..Default::default()
        }
        .resolve(&s)
        .unwrap_err()
        .to_string();
        assert!(e.contains("episode s01e01"), "{e}");
        let e = SplitPlan {
            test_runs: vec!["s09e01a".into()],
            ..Default::default()
        }
        .resolve(&s)
        .unwrap_err()
        .to_string();
        assert!(e.contains("test run 's09e01a' does not exist"), "{e}");
        // Default: the last run's whole episode tests.
        let r = SplitPlan::default().resolve(&s).unwrap();
        assert_eq!(r.roles, vec![Train, Train, Train, Train, Train, Test, Test]);
    }

    #[test]
    fn repeated_viewings_of_a_movie_stay_on_one_side() {
        use Role::*;
        // Runs 4-6 show one movie (BIDS keys differ; the sidecars name one stimulus file), and
        // so do runs 1 and 2.
        let mut s = subject(&[
            ("task-movie_run-01", 10),
            ("task-movie_run-02", 10),
            ("task-movie_run-03", 10),
            ("task-movie_run-04", 10),
            ("task-movie_run-05", 10),
            ("task-movie_run-06", 10),
            ("task-movie_run-07", 10),
        ]);
        for (i, r) in s.runs.iter_mut().enumerate() {
            r.episode = r.key.clone();
            r.id = r.key.clone();
            r.movie = match i {
                0 | 1 => "stimuli/a.mp4".into(),
                3..=5 => "stimuli/./rep.mp4".into(),
                _ => format!("stimuli/{}.mp4", r.key).into(),
            };
        }
        // The last run shows its own movie: it alone tests; 1 and 2 share a CV group.
        let r = SplitPlan::default().resolve(&s).unwrap();
        assert_eq!(
            r.roles,
            vec![Train, Train, Train, Train, Train, Train, Test]
        );
        assert_eq!(r.cv_group[0], r.cv_group[1]);
        assert_eq!(r.n_groups, 3);
        // The last three runs repeat one movie (`./` spelt differently): all of them test.
        s.runs.pop();
        s.runs[5].movie = "stimuli/rep.mp4".into();
        let r = SplitPlan::default().resolve(&s).unwrap();
        assert_eq!(r.roles, vec![Train, Train, Train, Test, Test, Test]);
        assert_eq!(stimulus_groups(&s.runs)[3..], ["task-movie_run-04"; 3]);
        // Naming one viewing as the test run while another trains is refused, naming them.
        let e = SplitPlan {
            test_runs: vec!["task-movie_run-06".into()],
            ..Default::default()
        }
        .resolve(&s)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("task-movie_run-04, task-movie_run-05, task-movie_run-06"),
            "{e}"
        );
    }

    #[test]
    fn toml_split_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.toml");
        std::fs::write(
            &p,
            "test_runs = [\"s03e01a\", \"s03e01b\"]\ncv_folds = 2\ntrim_start = 5\ntrim_end = 5\n",
        )
        .unwrap();
        let plan = SplitPlan::from_toml(&p).unwrap();
        assert_eq!(plan.test_runs, vec!["s03e01a", "s03e01b"]);
        assert_eq!(
            (plan.cv_folds, plan.trim_start, plan.trim_end),
            (Some(2), 5, 5)
        );
        std::fs::write(&p, "test_season = [3]\n").unwrap();
        let e = format!("{:#}", SplitPlan::from_toml(&p).unwrap_err());
        assert!(e.contains("split.toml") && e.contains("test_season"), "{e}");
    }
}
