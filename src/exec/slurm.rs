//! The SLURM executor: one sbatch job array per submission, resources from a [slurm] table.
//! Grids submit one task per unfinished cell (`brainscale grid run-cell`; tasks write only their
//! own cell folder, `grid collect` / `grid status` merge the rows); sharded encodes and
//! `bench-whole-brain` submit one task per voxel shard (`--voxel-shard k/K`).
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Resources and environment of the sbatch job array (one task per cell).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Wall-clock limit per cell, e.g. "02:00:00".
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. "32G".
    pub mem: Option<String>,
    /// Generic resources, e.g. "gpu:1".
    pub gres: Option<String>,
    /// At most this many array tasks at once (`--array=0-K%P`).
    pub max_parallel: Option<u32>,
    /// Further `#SBATCH` options, e.g. ["--constraint=a100"].
    #[serde(default)]
    pub extra: Vec<String>,
    /// Shell lines run before the cell (module loads, environment).
    #[serde(default)]
    pub setup: Vec<String>,
    /// The brainscale binary the tasks run (default: the one submitting).
    pub brainscale: Option<PathBuf>,
}

/// A submitted job array, kept in OUT/slurm/jobs.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub script: PathBuf,
    /// Cell id of each array index.
    pub cells: Vec<String>,
    pub submitted_unix: u64,
}

fn jobs_path(out: &Path) -> PathBuf {
    out.join("slurm").join("jobs.json")
}

pub fn read_jobs(out: &Path) -> Result<Vec<JobRecord>> {
    let p = jobs_path(out);
    if !p.exists() {
        return Ok(Vec::new());
    }
    crate::core::io::read_json(&p)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One grid's cells to run as a job array: the grid's name, file and [slurm] table, and the ids
/// of the cells (task i runs `cells[i]`).
pub struct GridJob<'a> {
    pub name: &'a str,
    pub grid_file: &'a Path,
    pub slurm: &'a SlurmConfig,
    pub cells: Vec<String>,
}

/// The job-array script for a grid's cells (pure, for tests and `--dry-run` users).
pub fn script(job: &GridJob, out: &Path, exe: &Path, cwd: &Path) -> String {
    let cells = &job.cells;
    let array = match job.slurm.max_parallel {
        Some(p) => format!("0-{}%{p}", cells.len() - 1),
        None => format!("0-{}", cells.len() - 1),
    };
    let mut t = header(
        job.slurm,
        &format!("bs-{}", job.name),
        &array,
        &out.join("slurm").join("logs"),
        cwd,
    );
    t.push_str("CELLS=(");
    for c in cells {
        t.push_str(&format!(" {}", quote(c)));
    }
    t.push_str(" )\n");
    t.push_str(&format!(
        "exec {} grid run-cell {} --out {} --cell \"${{CELLS[$SLURM_ARRAY_TASK_ID]}}\"\n",
        quote(&exe.display().to_string()),
        quote(&job.grid_file.display().to_string()),
        quote(&out.display().to_string())
    ));
    t
}

/// The `#SBATCH` lines (name, array, logs, resources, extras) and the setup lines of a
/// job-array script.
fn header(s: &SlurmConfig, name: &str, array: &str, logs: &Path, cwd: &Path) -> String {
    let mut t = String::from("#!/bin/bash\n");
    let mut d = |k: &str, v: &str| t.push_str(&format!("#SBATCH --{k}={v}\n"));
    d("job-name", name);
    d("array", array);
    d("output", &logs.join("%A_%a.out").display().to_string());
    d("chdir", &cwd.display().to_string());
    d("ntasks", "1");
    for (k, v) in [
        ("partition", &s.partition),
        ("account", &s.account),
        ("qos", &s.qos),
        ("time", &s.time),
        ("mem", &s.mem),
        ("gres", &s.gres),
    ] {
        if let Some(v) = v {
            d(k, v);
        }
    }
    if let Some(c) = s.cpus_per_task {
        d("cpus-per-task", &c.to_string());
    }
    for e in &s.extra {
        t.push_str(&format!("#SBATCH {}\n", e.trim()));
    }
    t.push_str("set -euo pipefail\n");
    for line in &s.setup {
        t.push_str(line);
        t.push('\n');
    }
    t
}

/// The job-array script of a sharded fit (`encode --slurm-shards K`, `bench-whole-brain
/// --slurm-shards K`), job name `name`: array task k runs `exe ARGS --voxel-shard k/K`, for
/// the shards `tasks` only (those whose part is missing), at most `max_parallel` at once.
/// Pure, for tests.
#[allow(clippy::too_many_arguments)]
pub fn shard_script(
    s: &SlurmConfig,
    name: &str,
    exe: &Path,
    args: &[String],
    n: usize,
    tasks: &[usize],
    logs: &Path,
    cwd: &Path,
) -> String {
    let list: Vec<String> = tasks.iter().map(|k| k.to_string()).collect();
    let array = match s.max_parallel {
        Some(p) => format!("{}%{p}", list.join(",")),
        None => list.join(","),
    };
    let mut t = header(s, &format!("bs-{name}"), &array, logs, cwd);
    t.push_str(&format!("exec {}", quote(&exe.display().to_string())));
    for a in args {
        t.push(' ');
        t.push_str(&quote(a));
    }
    t.push_str(&format!(
        " --voxel-shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\"\n"
    ));
    t
}

/// Writes a sharded fit's script `dir/NAME-….sbatch` (WORK/slurm) and submits it; returns
/// the job id. See [`shard_script`].
pub fn submit_shards(
    dir: &Path,
    s: &SlurmConfig,
    name: &str,
    args: &[String],
    n: usize,
    tasks: &[usize],
) -> Result<String> {
    let exe = match &s.brainscale {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().context("locating the brainscale binary for the SLURM tasks")?
        }
    };
    let cwd = std::env::current_dir().context("reading the current folder")?;
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{name}-{now}-{}.sbatch", std::process::id()));
    let text = shard_script(s, name, &exe, args, n, tasks, &dir.join("logs"), &cwd);
    crate::core::io::write_bytes(&path, text.as_bytes())?;
    sbatch(&path)
}

/// The command line of a shard task from this process's arguments (after the program name):
/// the same command (`encode`, `bench-whole-brain`) without `--slurm-shards`, `--sbatch` and `--wait` (the task
/// adds `--voxel-shard k/K`).
pub fn shard_task_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = vec![];
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        match a.as_str() {
            "--slurm-shards" | "--sbatch" => skip_value = true,
            "--wait" => {}
            _ if a.starts_with("--slurm-shards=") || a.starts_with("--sbatch=") => {}
            _ => out.push(a),
        }
    }
    out
}

/// Submits a script with `sbatch --parsable`; returns the job id.
fn sbatch(path: &Path) -> Result<String> {
    let o = Command::new("sbatch").arg("--parsable").arg(path).output().map_err(|e| {
        anyhow::anyhow!("running sbatch: {e}; the slurm executor needs SLURM's client tools (Debian: slurm-client) and a reachable controller")
    })?;
    if !o.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            path.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let job = text.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sbatch {}: unexpected reply '{}'",
            path.display(),
            text.trim()
        );
    }
    Ok(job)
}

/// Writes the script, submits it with `sbatch --parsable`, records the job; returns its id.
pub fn submit(grid: &GridJob, out: &Path) -> Result<String> {
    let exe = match &grid.slurm.brainscale {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().context("locating the brainscale binary for the SLURM tasks")?
        }
    };
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let dir = out.join("slurm");
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{}-{now}-{}.sbatch", grid.name, std::process::id()));
    crate::core::io::write_bytes(&path, script(grid, out, &exe, &cwd).as_bytes())?;
    let job = sbatch(&path)?;
    let mut jobs = read_jobs(out)?;
    jobs.push(JobRecord {
        job_id: job.clone(),
        script: path,
        cells: grid.cells.clone(),
        submitted_unix: now,
    });
    crate::core::io::write_json(&jobs_path(out), &jobs)?;
    Ok(job)
}

/// Array tasks of `job` still known to the controller: (array index, state).
fn squeue(job: &str) -> Result<Option<Vec<(usize, String)>>> {
    let o = Command::new("squeue")
        .args(["-h", "-r", "-j", job, "-o", "%K %T"])
        .output()
        .context("running squeue")?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        // Finished jobs drop out of the controller's memory: squeue then rejects the id.
        if err.contains("Invalid job id") {
            return Ok(Some(Vec::new()));
        }
        bail!("squeue -j {job} failed: {}", err.trim());
    }
    let mut tasks = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(st)) = (it.next(), it.next()) {
            if let Ok(k) = k.parse() {
                tasks.push((k, st.to_string()));
            }
        }
    }
    Ok(Some(tasks))
}

/// Cell id → queue state for the recorded jobs still in the queue.
pub fn queue_states(out: &Path) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for j in read_jobs(out)? {
        if let Some(tasks) = squeue(&j.job_id)? {
            for (k, st) in tasks {
                if let Some(id) = j.cells.get(k) {
                    m.insert(id.clone(), format!("{st} (job {}_{k})", j.job_id));
                }
            }
        }
    }
    Ok(m)
}

/// Polls squeue until no task of `job` is left.
pub fn wait(job: &str) -> Result<()> {
    let bar = crate::core::progress::spinner(format!("job {job}"));
    loop {
        let tasks = squeue(job)?.unwrap_or_default();
        if tasks.is_empty() {
            bar.finish_and_clear();
            return Ok(());
        }
        let running = tasks.iter().filter(|t| t.1 == "RUNNING").count();
        bar.set_message(format!(
            "job {job}: {} tasks left, {running} running",
            tasks.len()
        ));
        bar.tick();
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
