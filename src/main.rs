use clap::Parser;

fn main() {
    let cli = keyframe::config::Cli::parse();
    std::process::exit(keyframe::cli::run(cli));
}
