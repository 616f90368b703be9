//! The GPU build (`scripts/device-bench.sh prepare`: `--no-default-features`) must start on a bare
//! CUDA machine that promises only its own PyTorch and the C/C++ runtime (issue 23). CI-cheap
//! checks, no GPU and no GPU build: the dependency tree without default features holds no crate
//! that links a system library beyond libtorch, and `device-bench.sh run` on a machine without
//! what it needs stops within seconds with the missing piece named and exit 2.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Crates whose presence means a system library the GPU machine does not promise (HDF5 and,
/// through Debian's libhdf5, curl and TLS; ffmpeg; OpenBLAS/LAPACK).
const FORBIDDEN: [&str; 8] = [
    "hdf5", "curl", "openssl", "ssl", "ffmpeg", "openblas", "lapack", "netlib",
];

/// `-sys` crates allowed in the GPU build: libtorch itself, and the compression libraries of
/// tch's zip reader, which build their bundled C sources statically (checked by `ldd` in
/// `device-bench.sh prepare`). A new one must be checked the same way before it is added.
// linux-raw-sys (via pytorch-reader → tar → xattr → rustix) is pure-Rust syscall
// definitions: it links no C library, so the prepared binary's `ldd` is unchanged.
// libmimalloc-sys (the process allocator, `src/main.rs`) compiles mimalloc's C source into the
// binary: no shared library, `ldd` unchanged.
const ALLOWED_SYS: [&str; 5] = [
    "torch-sys",
    "bzip2-sys",
    "zstd-sys",
    "linux-raw-sys",
    "libmimalloc-sys",
];

#[test]
fn no_default_features_tree_links_no_hdf5_curl_or_tls() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"tch"),
        "unexpected cargo tree output:\n{text}"
    );
    let forbidden: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|c| FORBIDDEN.iter().any(|f| c.contains(f)))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the --no-default-features build pulls in {forbidden:?}: gate it behind a default \
         feature (as `hdf5`, `video`, `cpu-linalg` are)"
    );
    let mut sys: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|c| c.ends_with("-sys") && !ALLOWED_SYS.contains(c))
        .collect();
    sys.dedup();
    assert!(
        sys.is_empty(),
        "new -sys crates in the GPU build: {sys:?}; check `ldd` of the prepared binary \
         (scripts/device-bench.sh check-libs) and list them in ALLOWED_SYS if static"
    );
}

/// A prepare-like layout in a temporary folder: the script, `.carry/brainscale` (a tiny
/// dynamic executable linking only libc, not the real GPU binary) and the inputs `run` expects.
fn fake_prepared(with_binary: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::copy(
        repo().join("scripts/device-bench.sh"),
        dir.path().join("scripts/device-bench.sh"),
    )
    .unwrap();
    if with_binary {
        let carry = dir.path().join(".carry");
        std::fs::create_dir_all(carry.join("work/frames")).unwrap();
        let true_bin = ["/bin/true", "/usr/bin/true"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a `true` executable");
        std::fs::copy(true_bin, carry.join("brainscale")).unwrap();
    }
    dir
}

/// Runs `device-bench.sh run` in `dir` with `python` as PYTHON; the output and its wall time.
fn run_script(dir: &Path, python: &Path) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(dir.join("scripts/device-bench.sh"))
        .arg("run")
        .env("OUT", dir.join("out"))
        .env("PYTHON", python)
        .output()
        .expect("run bash");
    (out, t0.elapsed())
}

fn all_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The project venv's python (torch installed, CPU machine), if there is one.
fn venv_python() -> Option<PathBuf> {
    let p = repo().join(".venv/bin/python");
    p.exists().then_some(p)
}

#[test]
fn run_without_cuda_exits_2_naming_it_before_any_benchmark() {
    let Some(python) = venv_python() else {
        eprintln!("skipped: no .venv/bin/python (make deps installs it)");
        return;
    };
    let cuda = Command::new(&python)
        .args([
            "-c",
            "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)",
        ])
        .status()
        .unwrap();
    if cuda.success() {
        eprintln!("skipped: this machine has a CUDA device");
        return;
    }
    let dir = fake_prepared(true);
    let (out, took) = run_script(dir.path(), &python);
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no CUDA device visible to PyTorch"),
        "the message names CUDA:\n{text}"
    );
    assert!(
        !text.contains("== ridge"),
        "no benchmark may start:\n{text}"
    );
    // One python start importing torch: ~3 s idle, tens of seconds on a loaded 2-core machine.
    assert!(took < Duration::from_secs(120), "took {took:?}:\n{text}");
    // The libraries were listed (and all resolved) before the CUDA check.
    let log = std::fs::read_to_string(dir.path().join("out/device-bench.log")).unwrap();
    assert!(log.contains("runtime"), "ldd listing in the log:\n{log}");
    assert!(log.contains("no CUDA device"), "{log}");
}

#[test]
fn run_without_pytorch_or_without_prepare_exits_2_naming_it() {
    // A python without torch: `false` fails every `-c`.
    let false_bin = ["/bin/false", "/usr/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a `false` executable");
    let dir = fake_prepared(true);
    let (out, _) = run_script(dir.path(), Path::new(false_bin));
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no PyTorch importable"), "{text}");

    let dir = fake_prepared(false);
    let (out, _) = run_script(dir.path(), Path::new(false_bin));
    let text = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no .carry/brainscale") && text.contains("prepare"),
        "{text}"
    );
}

#[test]
fn check_libs_accepts_the_runtime_and_refuses_a_script() {
    let Some(python) = venv_python() else {
        eprintln!("skipped: no .venv/bin/python (make deps installs it)");
        return;
    };
    let dir = fake_prepared(true);
    let script = dir.path().join("scripts/device-bench.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("check-libs")
        .arg(dir.path().join(".carry/brainscale"))
        .env("PYTHON", &python)
        .output()
        .unwrap();
    let text = all_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("libc.so.6  (runtime"), "{text}");
    // Not a dynamic executable: refused, named.
    let out = Command::new("bash")
        .arg(&script)
        .arg("check-libs")
        .arg(&script)
        .env("PYTHON", &python)
        .output()
        .unwrap();
    let text = all_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ldd failed"), "{text}");
}
