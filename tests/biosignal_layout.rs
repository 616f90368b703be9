//! .npy/.npz layout (issue 20): a window set brainscale writes reads back identically
//! whatever its C vs L (the metadata sidecar `FILE.json` says `layout = NCL`); the TF-C rule
//! (the smaller non-batch axis is the channel axis, with a warning) applies only to foreign
//! files that say nothing.
use brainscale::biosignal::{self, tensors, LoadOptions, Windows};
use ndarray::{Array1, Array3};
use std::collections::BTreeMap;

/// 3 windows of C = 8 channels × L = 4 samples: more channels than samples, the shape the
/// TF-C heuristic would transpose. Value = 100·i + 10·c + t.
fn wide() -> Windows {
    Windows {
        samples: Array3::from_shape_fn((3, 8, 4), |(i, c, t)| (i * 100 + c * 10 + t) as f32),
        labels: Some(Array1::from(vec![0, 1, 0])),
        rate: Some(4.0),
        channels: (0..8).map(|c| format!("E{c}")).collect(),
        classes: Some(2),
        source: "wide".into(),
        meta: BTreeMap::new(),
    }
}

#[test]
fn our_npy_and_npz_read_back_as_written_whatever_c_and_l() {
    let dir = tempfile::tempdir().unwrap();
    let ds = wide();
    for name in ["wide.npy", "wide.npz", "samples.npy"] {
        let p = dir.path().join(name);
        tensors::write(&ds, &p).unwrap();
        assert!(tensors::meta_sidecar(&p).is_file(), "{name}");
        let back = biosignal::load(&p, &LoadOptions::default()).unwrap();
        assert_eq!(back.samples, ds.samples, "{name}");
        assert_eq!(back.labels, ds.labels, "{name}");
        assert_eq!(back.channels, ds.channels, "{name}");
        assert_eq!((back.rate, back.classes), (Some(4.0), Some(2)), "{name}");
        assert!(!back.meta.contains_key("layout_read"), "{name}");
    }
}

#[test]
fn foreign_npy_uses_the_tf_c_rule_and_bad_sidecars_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ds = wide();
    // The same array from another writer (no sidecar): [3, 8, 4] is taken as channels-last
    // [N, L = 8, C = 4] and transposed, with the warning recorded.
    let p = dir.path().join("foreign.npy");
    ndarray_npy::write_npy(&p, &ds.samples).unwrap();
    let back = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(back.samples.dim(), (3, 4, 8));
    assert_eq!(back.samples[[1, 3, 5]], ds.samples[[1, 5, 3]]);
    assert_eq!(back.meta["layout_read"], "NLC transposed to NCL");
    // A foreign file can say its layout in a sidecar.
    let side = tensors::meta_sidecar(&p);
    std::fs::write(&side, r#"{"layout": "NCL", "sampling_rate_hz": 4}"#).unwrap();
    let back = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(
        (back.samples.clone(), back.rate),
        (ds.samples.clone(), Some(4.0))
    );
    // Faults in the sidecar are named.
    for (text, fault) in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (r#"{"layout": ["NCL"]}"#, "field 'layout' must be a string"),
        (r#"{"layout": "CNL"}"#, "neither \"NCL\" nor \"NLC\""),
    ] {
        std::fs::write(&side, text).unwrap();
        let e = format!(
            "{:#}",
            biosignal::load(&p, &LoadOptions::default()).unwrap_err()
        );
        assert!(
            e.contains("foreign.npy") && e.contains(fault),
            "{text}: {e}"
        );
    }
}
