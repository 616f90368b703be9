//! `scaling fit`'s diagnostics against ground truth (issue 19, item 6): rows drawn from a known
//! law with 2% seed noise and 3 seeds per cell (tests/scaling_truth).
mod scaling_truth;
use brainscale::study::scaling::diagnostics::Diagnostics;
use brainscale::study::scaling::parametric::Law;
use brainscale::study::scaling::{run_fit, FitConfig, Target};
use scaling_truth::{budgets, ladder, rows, write_csv, Truth};
use std::path::Path;

/// bench/toy-cell.sh's law: a = β/(α+β) = 0.30/0.64.
const TOY: Law = Law {
    e: 1.7,
    a: 40.0,
    b: 60.0,
    alpha: 0.34,
    beta: 0.30,
};

fn config(csv: &Path, out: &Path, bootstrap: usize) -> FitConfig {
    FitConfig {
        results: csv.to_path_buf(),
        target: Target::EvalLoss,
        target_col: None,
        direction: None,
        n_col: "n_params".into(),
        d_col: "tokens".into(),
        c_col: "flops".into(),
        d_from_flops: false,
        filters: vec![],
        drop_highest: 0,
        bootstrap,
        seed: 0,
        budget: vec![],
        holdout_above: None,
        budget_tol: 0.1,
        isoflop_window: None,
        c_per_nd: 6.0,
        huber_delta: 1e-3,
        out: Some(out.to_path_buf()),
        no_plots: true,
    }
}

fn diagnose(law: Law, shift: impl Fn(f64) -> f64, bootstrap: usize) -> (Diagnostics, String) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    // 7 budgets spanning 30×, 9 sizes ±4× in √2 steps around the true optimum (× shift).
    let r = rows(
        Truth::Law(law),
        &budgets(1e13, 3e14, 7),
        |c| ladder(law.optimal(c).0, 9, 2f64.sqrt(), shift(c)),
        3,
        0.02,
        7,
    );
    write_csv(&csv, &r);
    let f = run_fit(&config(&csv, &dir.path().join("fit"), bootstrap)).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fit/fit.json")).unwrap())
            .unwrap();
    let d: Diagnostics = serde_json::from_value(json["diagnostics"].clone()).unwrap();
    (d, f.text)
}

#[test]
fn fit_recovers_the_allocation_exponent_within_its_interval() {
    let (d, text) = diagnose(TOY, |_| 1.0, 60);
    let truth = 0.30 / 0.64;
    let [lo, hi] = d.ci_a.expect("bootstrap interval of a");
    assert!(
        lo <= truth && truth <= hi,
        "a = {truth} outside [{lo}, {hi}]\n{text}"
    );
    assert!(
        hi - lo < 0.25,
        "interval too wide to be useful: [{lo}, {hi}]"
    );
    assert!((d.a - truth).abs() < 0.08, "a = {} vs {truth}", d.a);
    // Cells aggregated over their 3 seeds.
    assert_eq!(d.cells.len(), 63);
    assert!(d.cells.iter().all(|c| c.seeds == 3 && c.sd > 0.0));
    // Every sweep is centred on its optimum.
    assert_eq!(d.unbracketed, 0, "{text}");
    // The noise comes from the seeds and is the one drawn (2%); the true law fits within it.
    let nz = d.noise.as_ref().unwrap();
    assert_eq!(nz.source, "seeds");
    assert_eq!(nz.df, 7 * 9 * 2);
    assert!((nz.sd_log - 0.02).abs() < 0.004, "noise {}", nz.sd_log);
    assert!(d.misfit_ratio.unwrap() < 1.3, "{text}");
    // Each (budget, size) is its own model here: at 2 s.e. about 5% of 63 are flagged by chance.
    assert!(
        d.models.iter().filter(|m| m.systematic).count() <= 6,
        "{text}"
    );
    assert!(
        text.contains("allocation exponent a = beta/(alpha+beta)"),
        "{text}"
    );
    assert!(text.contains("7 of 7 budgets"), "{text}");
}

#[test]
fn an_unbracketed_grid_is_flagged_with_the_side_to_extend() {
    // The four smaller budgets' ladders start at 5× the optimum: their minimum lies below the
    // smallest model; the three larger ones stay centred.
    let (d, text) = diagnose(TOY, |c| if c < 9e13 { 20.0 } else { 1.0 }, 0);
    assert_eq!(d.brackets.len(), 7);
    for b in &d.brackets {
        if b.budget < 9e13 {
            assert!(!b.bracketed, "{b:?}");
            assert_eq!(b.extend.as_deref(), Some("smaller"), "{b:?}");
        } else {
            assert!(b.bracketed, "{b:?}");
            assert_eq!(b.extend, None);
        }
    }
    assert_eq!(d.unbracketed, 4);
    assert!(text.contains("NOT bracketed") && text.contains("extend the ladder: smaller N"));
}

#[test]
fn an_e_not_identified_away_from_0_is_reported_and_profiled_out() {
    // No irreducible loss: E = 0. E's interval reaches its bound; the E = 0 refit recovers a.
    let law = Law { e: 0.0, ..TOY };
    let (d, text) = diagnose(law, |_| 1.0, 40);
    assert!(d.e_reaches_bound, "{text}");
    let e = &d.params[0];
    assert_eq!(e.name, "E");
    assert!(e.share_at_bound.unwrap() >= 0.025, "{e:?}");
    let p = d.profiled.as_ref().expect("profiled fit");
    assert!(p.law.e < 1e-20);
    let truth = 0.30 / 0.64;
    let [lo, hi] = p.ci_a.unwrap();
    assert!(
        lo <= truth && truth <= hi,
        "profiled a [{lo}, {hi}] vs {truth}"
    );
    assert!(text.contains("E profiled out"), "{text}");
    // With the true E = 1.7 the interval stays off 0 and nothing is profiled.
    let (d, text) = diagnose(TOY, |_| 1.0, 40);
    assert!(!d.e_reaches_bound && d.profiled.is_none(), "{text}");
}
