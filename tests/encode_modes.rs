//! The modes of `encode` (and of the other fMRI commands with exclusive flags) are enforced
//! by the parser: each meaningless combination is refused with a message naming the flags,
//! a non-zero exit, and nothing written (not even the work folder).
mod common;
use common::{brainscale, tiny};

/// Runs `cmd` + `extra` with a fresh work folder; asserts a refusal whose message holds every
/// string of `expect`, and that the work folder was not created.
fn refused(cmd: &[&str], extra: &[&str], expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (d, w) = (tiny().to_str().unwrap(), work.to_str().unwrap());
    let mut args: Vec<&str> = cmd.to_vec();
    if cmd[0] != "decode" {
        args.extend(["--dataset", d]);
    }
    args.extend(["--work", w]);
    args.extend(extra);
    let (ok, out, err) = brainscale(&args);
    assert!(!ok, "{args:?} was accepted: {out}{err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: `{e}` not in: {err}");
    }
    assert!(!work.exists(), "{args:?} wrote {}", work.display());
}

#[test]
fn banded_encode_refuses_the_streamed_and_slurm_flags() {
    let bands = ["--bands", "a=baseline,b=baseline"];
    let with = |extra: &[&str]| -> Vec<String> {
        bands.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (extra, flag) in [
        (&["--voxel-shard", "0/2"][..], "--voxel-shard"),
        (&["--stream"][..], "--stream"),
        (&["--slurm-shards", "2"][..], "--slurm-shards"),
        (&["--block-voxels", "100"][..], "--block-voxels"),
        (&["--voxel-cache", "vc"][..], "--voxel-cache"),
        (&["--process-memory", "1GB"][..], "--process-memory"),
        (
            &["--save-weights", "--stream-weights"][..],
            "--stream-weights",
        ),
        (&["--features", "baseline"][..], "--features"),
    ] {
        let a = with(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&["encode"], &a, &["--bands", flag, "cannot be used with"]);
    }
}

#[test]
fn encode_mode_flags_need_their_mode() {
    // Flags of the streamed modes without one of them.
    for (extra, flag) in [
        (&["--block-voxels", "100"][..], "--block-voxels"),
        (&["--voxel-cache", "vc"][..], "--voxel-cache"),
        (&["--process-memory", "1GB"][..], "--process-memory"),
    ] {
        refused(&["encode"], extra, &[flag, "--stream"]);
    }
    // SLURM options without --slurm-shards; a shard and a shard array at once.
    refused(&["encode"], &["--sbatch=--time=1"], &["--slurm-shards"]);
    refused(&["encode"], &["--wait"], &["--wait", "--slurm-shards"]);
    refused(
        &["encode"],
        &["--voxel-shard", "0/2", "--slurm-shards", "2"],
        &["--voxel-shard", "--slurm-shards", "cannot be used with"],
    );
    // Banded options without --bands.
    for (extra, flag) in [
        (&["--band-candidates", "5"][..], "--band-candidates"),
        (&["--band-seed", "1"][..], "--band-seed"),
        (&["--band-weights", "0.5:0.5"][..], "--band-weights"),
        (&["--band-concentration", "1"][..], "--band-concentration"),
        (&["--partition"][..], "--partition"),
    ] {
        refused(&["encode"], extra, &[flag, "--bands"]);
    }
    // `merge` joins parts: the fitting modes' flags do not apply to it.
    for (extra, flag) in [
        (&["--bands", "a=x,b=y"][..], "--bands"),
        (&["--stream"][..], "--stream"),
        (&["--voxel-shard", "0/2"][..], "--voxel-shard"),
        (&["--slurm-shards", "2"][..], "--slurm-shards"),
    ] {
        let mut a = extra.to_vec();
        a.extend(["merge", "--shards", "2"]);
        refused(&["encode"], &a, &["encode merge", flag, "does not apply"]);
    }
}

#[test]
fn other_fmri_commands_refuse_exclusive_flags() {
    // decode: a dataset's movies or given files, exactly one of them.
    let d = tiny().to_str().unwrap();
    refused(
        &["decode"],
        &["--dataset", d, "--movie", "m.mp4"],
        &["--dataset", "--movie", "cannot be used with"],
    );
    refused(&["decode"], &[], &["--movie", "--dataset", "required"]);
    // align: FIR delays, the HRF, or the baseline's window, one of them.
    refused(
        &["align"],
        &["--hrf", "--delays", "1,2"],
        &["--delays", "--hrf", "cannot be used with"],
    );
    refused(
        &["align"],
        &["--hrf", "--hrf-delay", "3"],
        &["--hrf", "cannot be used with"],
    );
    refused(
        &["align"],
        &["--hrf-delay", "3", "--delays", "1,2"],
        &["--delays", "--hrf-delay", "cannot be used with"],
    );
    refused(&["align"], &["--window", "4"], &["--window", "--hrf-delay"]);
}
