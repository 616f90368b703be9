//! Keeps libtorch_cuda linked (so CUDA registers when present) and embeds an rpath to the
//! libtorch that torch-sys linked against, so `brainscale` runs without LD_LIBRARY_PATH.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    // The libtorch version, for the provenance of reports (`brainscale report`).
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if let Ok(out) = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
    {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !v.is_empty() {
            println!("cargo:rustc-env=BRAINSCALE_TORCH_VERSION={v}");
        }
    }
    if let Some(dir) = libtorch_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

fn libtorch_lib_dir() -> Option<String> {
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(format!("{root}/lib"));
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
