//! Provenance of results: each command run on a work folder is appended to
//! WORK/commands.jsonl with the versions it ran with; `brainscale report` lists them.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One line of WORK/commands.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRecord {
    pub unix: u64,
    pub argv: Vec<String>,
    pub cwd: String,
    pub brainscale: String,
    pub torch: String,
}

/// The versions this binary was built with: brainscale and the libtorch (PyPI torch) it links.
pub fn versions() -> (String, String) {
    (
        env!("CARGO_PKG_VERSION").to_string(),
        option_env!("BRAINSCALE_TORCH_VERSION")
            .unwrap_or("unknown")
            .to_string(),
    )
}

/// Appends this process's command line to WORK/commands.jsonl (creating WORK). A line is one
/// `write` of under a page, so concurrent stages do not interleave lines.
pub fn record_command(work: &Path) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let (b, t) = versions();
    let rec = CommandRecord {
        unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        argv: std::env::args().collect(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        brainscale: b,
        torch: t,
    };
    let p = work.join("commands.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    f.write_all(format!("{}\n", serde_json::to_string(&rec)?).as_bytes())
        .with_context(|| format!("writing {}", p.display()))
}

/// Reads WORK/commands.jsonl (empty when absent; unreadable lines are errors naming the line).
pub fn read_commands(work: &Path) -> Result<Vec<CommandRecord>> {
    let p = work.join("commands.jsonl");
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not a command record", p.display(), i + 1))
        })
        .collect()
}
