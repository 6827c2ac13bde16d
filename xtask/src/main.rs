//! `cargo xtask <task>`: the repository's automation (matklad's xtask
//! convention). Each task is a module; tasks spawn `$CARGO` and the tools
//! they need.
//!
//! - `cargo xtask ci`: every check and test, as CI runs them (installs what
//!   a fresh machine lacks first; `--no-setup` skips that).
//! - `cargo xtask setup`: only the installation step.
//! - `cargo xtask e2e [--model NAME] [--cpus N] [--expect VERDICT] [--dump DIR]`:
//!   the emulated end-to-end suite.
//! - `cargo xtask bench-check [--runs N]`: the checker's performance
//!   figures (start-up against kvm-ok, replay of big dumps).
//! - `cargo xtask wine`: nt-driver loaded by Wine, driven by vmx-check.exe
//!   and a raw Win32 client.

mod bench_check;
mod ci;
mod e2e;
mod setup;
#[cfg(test)]
mod tidy;
mod wine;

use anyhow::bail;

const USAGE: &str = "usage: cargo xtask <task>
tasks:
  ci [--no-setup]                 every check and test, as CI runs them
  setup                           install what the checks need (apt packages, rustup targets, tools)
  e2e [--model NAME] [--cpus N] [--expect VERDICT] [--dump DIR]
                                  boot the test kernel in emulators (default: the whole matrix;
                                  `cargo xtask e2e --help` explains the options)
  bench-check [--runs N]          vmx-check's performance figures: start-up against kvm-ok and
                                  /bin/true, replay of 1, 1024 and 8192 processors
  wine                            load nt-driver in Wine and drive it end to end";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((task, rest)) if task == "ci" => ci::run(rest),
        Some((task, rest)) if task == "setup" && rest.is_empty() => setup::run(),
        Some((task, rest)) if task == "e2e" => e2e::run(rest),
        Some((task, rest)) if task == "bench-check" => bench_check::run(rest),
        Some((task, rest)) if task == "wine" => wine::run(rest),
        _ => bail!("{USAGE}"),
    }
}
