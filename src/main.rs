use clap::Parser;

/// mimalloc for every allocation of the process, libtorch's included (the crate's `override`
/// feature defines malloc/free, which the shared libraries then resolve to): a grid cell's
/// thousands of small tensors a step spent ~16% of its CPU time in glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = brainscale::cli::Cli::parse();
    if let Err(e) = brainscale::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
