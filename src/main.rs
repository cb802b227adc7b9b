use std::os::unix::process::CommandExt;

use clap::Parser;

fn main() {
    let cli = keyframe::config::Cli::parse();
    if matches!(cli.command, keyframe::config::Command::Serve(_)) {
        limit_malloc_arenas();
    }
    std::process::exit(keyframe::cli::run(cli));
}

/// glibc gives threads that allocate at the same time arenas of their own (up to eight per
/// core) and keeps what is freed in them: under load the server held about 4 MB more than with
/// at most two arenas, and 1 MB more with two than with one on a single core, neither for
/// measurable speed (bench/FINDINGS.md). So: one arena per usable core, at most two. The limit
/// is read only when a process starts, so `serve` starts itself again with it, in the same
/// process (exec keeps the PID), unless the operator set one.
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // exec returns only when it failed; then the server runs without the limit.
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(
            "MALLOC_ARENA_MAX",
            keyframe::config::usable_cores().min(2).to_string(),
        )
        .exec();
}
