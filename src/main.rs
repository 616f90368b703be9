use clap::Parser;

fn main() {
    let cli = brainscale::cli::Cli::parse();
    if let Err(e) = brainscale::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
