//! `brainscale report WORK`: one self-contained `report.html` (every image embedded as a data
//! URI, no external file or script) with the per-subject summary table, each subject's map,
//! the study's figure set for every bench results file under WORK, and the commands and
//! versions that produced them (WORK/commands.jsonl, appended by each stage).
//!
//! The page checks itself when opened: a script counts the images the browser decoded and
//! writes "N of M figures rendered" (and `data-images-loaded="N/M"` on `<body>`), which the
//! headless-Chromium test reads.
pub use crate::core::provenance::{read_commands, record_command, versions, CommandRecord};
use crate::fmri::maps::SummaryRow;
use crate::study::figures;
use anyhow::{Context, Result};
use base64::Engine as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// UTC date and time of a Unix time (civil-from-days, proleptic Gregorian).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let s = unix % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn img(path: &Path, alt: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Bench results files under `work` (itself, or up to three folders down).
pub fn find_bench_results(work: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let p = d.join("results.csv");
        if p.is_file() && crate::study::grids::results::read_results(d).is_ok() {
            out.push(p);
        }
        if depth == 0 {
            return;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !p.ends_with("cells") && !p.is_symlink())
            .collect();
        subs.sort();
        for s in subs {
            walk(&s, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(work, 3, &mut out);
    out
}

/// What a written report holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    pub path: PathBuf,
    pub subjects: usize,
    pub bench_results: usize,
    /// `<img>` elements in the page.
    pub images: usize,
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1280px;margin:24px auto;color:#222}
h1{font-size:26px}h2{font-size:21px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:36px}h3{font-size:17px}
table{border-collapse:collapse;font-size:14px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:8px 0 18px}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:13px}.note{color:#555;font-size:14px}";

const CHECK: &str = "<script>window.addEventListener('load',function(){var a=document.images,n=0;
for(var i=0;i<a.length;i++){if(a[i].complete&&a[i].naturalWidth>0)n++;}
document.body.setAttribute('data-images-loaded',n+'/'+a.length);
document.getElementById('imgcheck').textContent=n+' of '+a.length+' figures rendered';});</script>";

/// Writes the report; figures of bench results are drawn (into each results file's
/// `figures/` folder) first.
pub fn write_report(work: &Path, out: Option<&Path>) -> Result<ReportSummary> {
    if !work.is_dir() {
        anyhow::bail!(
            "{}: not a folder (give a work folder of brainscale)",
            work.display()
        );
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| work.join("report.html"));
    let (bv, tv) = versions();
    let mut h = String::new();
    let mut images = 0usize;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>brainscale report: {}</title><style>{STYLE}</style></head><body>\
         <h1>brainscale report: {}</h1><p class=\"note\">written {} by brainscale {bv} (libtorch {tv}); <span id=\"imgcheck\">figures not checked (scripts off)</span></p>",
        esc(&work.display().to_string()),
        esc(&work.display().to_string()),
        utc(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
    );

    // Summary table and maps.
    let summary = work.join("summary.csv");
    let rows: Vec<SummaryRow> = if summary.exists() {
        csv::Reader::from_path(&summary)
            .with_context(|| format!("opening {}", summary.display()))?
            .deserialize()
            .enumerate()
            .map(|(i, r)| r.with_context(|| format!("{}: line {}", summary.display(), i + 2)))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    if !rows.is_empty() {
        h += "<h2>Encoding performance per subject</h2><table><tr><th>dataset</th><th>features</th><th>subject</th><th>voxels</th><th>test runs</th><th>mean r [95% CI]</th><th>top-10% r [95% CI]</th><th>r &gt; 0.1 [95% CI]</th><th>q &lt; 0.05 [95% CI]</th><th>FWE p &lt; 0.05</th><th>ceiling mean r</th><th>repeat ceiling</th><th>r / ceiling</th><th>median alpha</th></tr>";
        let opt = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.3}"));
        let pct = |v: Option<f64>| v.map_or("-".into(), |x| format!("{:.1}%", 100.0 * x));
        // A value with its block-bootstrap interval when the results hold one.
        let ci = |v: f64, lo: Option<f64>, hi: Option<f64>, k: f64, unit: &str| match (lo, hi) {
            (Some(a), Some(b)) => format!("{:.3}{unit} [{:.3}, {:.3}]", k * v, k * a, k * b),
            _ => format!("{:.3}{unit}", k * v),
        };
        for r in &rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>sub-{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td></tr>",
                esc(&r.dataset), esc(&r.features), esc(&r.subject), r.voxels, esc(&r.test_runs),
                ci(r.mean_r, r.mean_r_ci_low, r.mean_r_ci_high, 1.0, ""),
                ci(r.top10_mean_r, r.top10_mean_r_ci_low, r.top10_mean_r_ci_high, 1.0, ""),
                ci(r.frac_r_above_0_1, r.frac_r_above_0_1_ci_low, r.frac_r_above_0_1_ci_high, 100.0, "%"),
                match r.frac_q_below_0_05 {
                    Some(f) => ci(f, r.frac_q_below_0_05_ci_low, r.frac_q_below_0_05_ci_high, 100.0, "%"),
                    None => "-".into(),
                },
                pct(r.frac_fwe_below_0_05),
                opt(r.ceiling_mean_r), opt(r.repeat_ceiling_mean_r), opt(r.normalised_mean_r), r.median_alpha
            );
        }
        h += "</table><p class=\"note\">r: Pearson correlation between predicted and measured BOLD on the held-out runs, per voxel (or parcel), averaged; ceiling: the same for the noise-free signal (synthetic data only); [95% CI]: block-bootstrap interval over the test TRs (10-TR blocks); q &lt; 0.05, FWE p &lt; 0.05: share of voxels significant under the block-permutation null (Benjamini–Hochberg, max-statistic); repeat ceiling: from repeated viewings of the test movie (Sahani &amp; Linden 2003), r / ceiling over voxels with a ceiling ≥ 0.1.</p><h2>Maps</h2>";
        for r in &rows {
            let dir = work
                .join("maps")
                .join(&r.features)
                .join(format!("sub-{}", r.subject));
            let _ = write!(h, "<h3>sub-{} · {}</h3>", esc(&r.subject), esc(&r.features));
            match ["r_statmap.png", "r_mosaic.png"]
                .iter()
                .map(|f| dir.join(f))
                .find(|p| p.exists())
            {
                Some(p) => {
                    h += &img(&p, &format!("r map of sub-{} ({})", r.subject, r.features))?;
                    images += 1;
                }
                None => {
                    let _ = write!(
                        h,
                        "<p class=\"note\">no map image in {}</p>",
                        esc(&dir.display().to_string())
                    );
                }
            }
            // The ceiling-normalised map, when runs repeated the test movie.
            let p = dir.join("normalised_r_statmap.png");
            if p.exists() {
                let alt = format!("r / repeat ceiling of sub-{} ({})", r.subject, r.features);
                h += &img(&p, &alt)?;
                images += 1;
            }
        }
    }

    // Bench results: figure set and table.
    let benches = find_bench_results(work);
    for res in &benches {
        let srows = figures::read_rows(res)?;
        let fig_dir = res.parent().unwrap_or(Path::new(".")).join("figures");
        std::fs::create_dir_all(&fig_dir)
            .with_context(|| format!("creating {}", fig_dir.display()))?;
        let _ = write!(h, "<h2>Scale benchmark: {}</h2><p class=\"note\">{} rows; figures drawn by <code>brainscale scaling plots {}</code></p>",
            esc(&res.display().to_string()), srows.len(), esc(&res.display().to_string()));
        for f in figures::figure_set(&srows) {
            let p = fig_dir.join(format!("{}.png", f.name));
            figures::draw(&p, &f).with_context(|| format!("drawing {}", p.display()))?;
            let _ = write!(h, "<h3>{}</h3>", esc(&f.title));
            h += &img(&p, &f.title)?;
            images += 1;
        }
        h += "<table><tr><th>model</th><th>d</th><th>L</th><th>H</th><th>N</th><th>D</th><th>precision</th><th>seed</th><th>eval loss</th><th>encoding r</th><th>pretrain s</th><th>wall s</th></tr>";
        let opt = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.4}"));
        for r in &srows {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>{:.3e}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                esc(&r.model), r.d_model, r.n_layer, r.n_head, r.n_params, r.tokens, esc(&r.precision), r.seed,
                opt(r.eval_loss), opt(r.encoding_r), r.pretrain_s.map_or("-".into(), |v| format!("{v:.1}")), r.wall_s);
        }
        h += "</table>";
    }
    if rows.is_empty() && benches.is_empty() {
        let _ = write!(h, "<p>{} holds no summary.csv and no bench results.csv: run <code>brainscale maps</code> or <code>brainscale grid run</code> first.</p>", esc(&work.display().to_string()));
    }

    // Provenance.
    h += "<h2>Commands and versions</h2>";
    let mut cmds = read_commands(work)?;
    for res in &benches {
        if let Some(d) = res.parent().filter(|d| *d != work) {
            cmds.extend(read_commands(d)?);
        }
    }
    cmds.sort_by_key(|c| c.unix);
    if cmds.is_empty() {
        h += "<p class=\"note\">No command log (WORK/commands.jsonl): these results were written by a brainscale without one.</p>";
    } else {
        h += "<pre>";
        for c in &cmds {
            let argv: Vec<String> = c
                .argv
                .iter()
                .map(|a| {
                    if a.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "-_./=:,+".contains(ch))
                    {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect();
            let _ = writeln!(
                h,
                "# {}  (in {}; brainscale {}, libtorch {})\n{}",
                utc(c.unix),
                esc(&c.cwd),
                esc(&c.brainscale),
                esc(&c.torch),
                esc(&argv.join(" "))
            );
        }
        h += "</pre>";
    }
    let _ = write!(h, "<p class=\"note\">This page: <code>brainscale report {}</code> (brainscale {bv}, libtorch {tv}, {} {}).</p>",
        esc(&work.display().to_string()), std::env::consts::OS, std::env::consts::ARCH);
    h += CHECK;
    h += "</body></html>\n";
    crate::core::io::write_atomic(&out, |tmp| {
        std::fs::write(tmp, &h).with_context(|| format!("writing {}", tmp.display()))
    })?;
    Ok(ReportSummary {
        path: out,
        subjects: rows.len(),
        bench_results: benches.len(),
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
