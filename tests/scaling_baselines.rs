//! `scaling validate` against trivial baselines, on ground truth (issue 19, items 3 and 6):
//! rows from a known law with 2% seed noise and 3 seeds per cell (tests/scaling_truth), 7
//! fitted budgets spanning 30× and a sweep at 5× the largest.
mod scaling_truth;
use brainscale::study::scaling::baselines::BaselineReport;
use brainscale::study::scaling::parametric::Law;
use brainscale::study::scaling::validate::{run_validate, ValidateConfig};
use brainscale::study::scaling::Direction;
use scaling_truth::{budgets, ladder, rows, write_csv, Truth};

/// A law whose allocation exponent a = β/(α+β) = 0.75 is far from Chinchilla's 0.5, so that
/// the a = 0.5 baseline is wrong by ~0.8 in ln N at 5× above a 30× span; its iso-FLOP curves
/// rise 4–6% at 2× from the optimum (the recorded BIOT sweeps: ~10%), against 2% seed noise.
const LAW: Law = Law {
    e: 0.5,
    a: 300.0,
    b: 3000.0,
    alpha: 0.3,
    beta: 0.9,
};

fn validate(truth: Truth, seed: u64) -> (BaselineReport, String) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    let mut cs = budgets(1e13, 3e14, 7);
    cs.push(1.5e15);
    let r = rows(
        truth,
        &cs,
        |c| ladder(LAW.optimal(c).0, 9, 2f64.sqrt(), 1.0),
        3,
        0.02,
        seed,
    );
    write_csv(&csv, &r);
    let v = run_validate(&ValidateConfig {
        results: vec![csv],
        fit_upto: 3e14,
        at: None,
        target_col: "eval_loss".into(),
        direction: Direction::Lower,
        n_col: "n_params".into(),
        d_col: "tokens".into(),
        c_col: "flops".into(),
        filters: vec![],
        isoflop_window: None,
        c_per_nd: None,
        bootstrap: 60,
        seed: 0,
        budget_tol: 0.1,
        huber_delta: 1e-3,
        out: Some(dir.path().join("val")),
        no_plots: true,
    })
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("val/validate.json")).unwrap(),
    )
    .unwrap();
    let b: BaselineReport = serde_json::from_value(json["baselines"].clone()).unwrap();
    (b, v.text)
}

fn outcome<'a>(b: &'a BaselineReport, baseline: &str) -> &'a str {
    &b.verdicts
        .iter()
        .find(|v| v.baseline == baseline)
        .unwrap()
        .outcome
}

#[test]
fn a_real_law_beats_the_trivial_baselines() {
    let (b, text) = validate(Truth::Law(LAW), 11);
    let truth = LAW.optimal(1.5e15).0;
    assert!(
        (b.n_star / truth).ln().abs() < 0.4,
        "N* {} vs {truth}\n{text}",
        b.n_star
    );
    let law = &b.scores[0];
    assert_eq!(law.method, "law");
    assert!(law.log_ratio.unwrap().abs() < 0.3, "{text}");
    assert_eq!(outcome(&b, "previous best"), "law beats baseline", "{text}");
    assert_eq!(outcome(&b, "a = 0.5"), "law beats baseline", "{text}");
    // The iso-FLOP line is a scaling law of its own (the same optima): it may tie, never win.
    assert_ne!(outcome(&b, "iso-FLOP line"), "baseline beats law", "{text}");
    assert!(
        text.contains("the law beats baseline 'previous best'"),
        "{text}"
    );
}

#[test]
fn a_loss_independent_of_n_is_not_distinguishable() {
    let (b, text) = validate(Truth::FlatInN(LAW), 11);
    for v in &b.verdicts {
        assert_ne!(v.outcome, "law beats baseline", "{text}");
    }
    assert!(text.contains("not distinguishable"), "{text}");
}
