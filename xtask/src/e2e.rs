//! `cargo xtask e2e [--model NAME] [--cpus N] [--expect VERDICT]`: builds
//! the bare-metal test kernel (`e2e-kernel/`), boots it in emulators, and
//! checks what it reports.
//!
//! Each case is one boot: a machine (Bochs with a CPU model and processor
//! count, or QEMU TCG) and a scenario on the kernel command line. The kernel
//! prints a line per step on COM1 and ends with exactly one
//! `E2E RESULT: PASS <summary>` or `E2E RESULT: FAIL <reason>` line and an
//! exit signal; a case passes when the line says PASS and the emulator's
//! exit status agrees. The files of case `C` (bochsrc, logs, ISO) are in
//! `target/e2e/C/`.
//!
//! Without options it runs the default matrix ([`matrix::default_matrix`]);
//! `--model`, `--cpus` and `--expect` run a single Bochs enter-leave case
//! instead (defaults: `corei7_skylake_x`, 1 processor, the verdict the model
//! should give: `not-intel` for AMD models, `ready` otherwise).

mod emulator;
mod image;
mod matrix;
mod verdict;

use std::cmp::Reverse;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use matrix::{Case, DEFAULT_MODEL};
use verdict::{Signal, Verdict};

/// Emulators running at once: this is CPU-bound work on a two-core machine.
const PARALLEL_RUNS: usize = 2;

/// The command-line options.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    model: Option<String>,
    cpus: Option<u32>,
    expect: Option<&'static str>,
}

/// vmx-core's verdict names (`vmx_core::Verdict::name`).
const VERDICTS: [&str; 7] = [
    "ready",
    "not-intel",
    "nested-unavailable",
    "no-vmx",
    "disabled-by-firmware",
    "in-use",
    "undetermined",
];

/// How to call it.
const USAGE: &str = "usage: cargo xtask e2e [--model NAME] [--cpus N] [--expect VERDICT]";

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--model" => options.model = Some(value()?.clone()),
                "--cpus" => {
                    let cpus: u32 = value()?.parse().context("--cpus takes a number")?;
                    if !(1..=16).contains(&cpus) {
                        bail!("--cpus must be between 1 and 16 (the kernel's limit)");
                    }
                    options.cpus = Some(cpus);
                }
                "--expect" => {
                    let name = value()?;
                    let verdict = VERDICTS.iter().find(|&&verdict| verdict == name);
                    options.expect = Some(*verdict.with_context(|| {
                        format!("--expect takes one of {}", VERDICTS.join(", "))
                    })?);
                }
                other => bail!("unknown argument {other:?}; {USAGE}"),
            }
        }
        Ok(options)
    }

    fn cases(&self) -> Vec<Case> {
        if *self == Self::default() {
            return matrix::default_matrix();
        }
        let model = self.model.as_deref().unwrap_or(DEFAULT_MODEL);
        let expect = self
            .expect
            .unwrap_or_else(|| matrix::expected_verdict(model));
        matrix::single(model, self.cpus.unwrap_or(1), expect)
    }
}

/// A finished case.
#[derive(Debug)]
struct Outcome {
    verdict: Verdict,
    duration: Duration,
    serial_log: PathBuf,
}

/// Runs `cargo xtask e2e` with the arguments after `e2e`.
///
/// # Errors
/// When a tool is missing, the kernel does not build, or any case fails.
pub fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let cases = options.cases();
    let repo = repo_root();
    let kernel = image::build_kernel(&repo)?;
    let out = repo.join("target/e2e");

    let start = Instant::now();
    let outcomes = run_cases(&cases, &kernel, &out);
    let wall = start.elapsed();

    println!();
    println!(
        "{:<54} {:>13}  {:<6} {:>7}",
        "case", "entered/left", "result", "time"
    );
    let mut failures = 0;
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let (result, entered_left, detail) = match outcome {
            Ok(Outcome {
                verdict: Verdict::Pass(summary),
                ..
            }) => ("PASS", verdict::entered_left(summary), None),
            Ok(Outcome {
                verdict: Verdict::Fail(reason),
                serial_log,
                ..
            }) => (
                "FAIL",
                verdict::entered_left(reason),
                Some(format!("{reason} (serial log: {})", serial_log.display())),
            ),
            Err(error) => ("ERROR", None, Some(format!("{error:#}"))),
        };
        let time = outcome.as_ref().map_or_else(
            |_| "-".to_owned(),
            |o| format!("{:.1} s", o.duration.as_secs_f64()),
        );
        println!(
            "{:<54} {:>13}  {:<6} {:>7}",
            case.name(),
            entered_left.as_deref().unwrap_or("-"),
            result,
            time
        );
        if let Some(detail) = detail {
            failures += 1;
            println!("    {detail}");
        }
    }
    println!(
        "{} cases, {} failed, {:.1} s wall",
        cases.len(),
        failures,
        wall.as_secs_f64()
    );
    if failures > 0 {
        bail!("{failures} of {} e2e cases failed", cases.len());
    }
    Ok(())
}

/// Runs every case, [`PARALLEL_RUNS`] at a time, those with the most
/// processors (the slowest in Bochs) first; the outcomes in case order.
fn run_cases(cases: &[Case], kernel: &Path, out: &Path) -> Vec<Result<Outcome>> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.sort_by_key(|&index| Reverse(cases[index].machine.cpus()));
    let next = AtomicUsize::new(0);
    let outcomes: Vec<Mutex<Option<Result<Outcome>>>> =
        cases.iter().map(|_| Mutex::new(None)).collect();
    thread::scope(|scope| {
        for _ in 0..PARALLEL_RUNS.min(cases.len()) {
            scope.spawn(|| {
                while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let case = &cases[index];
                    let outcome = run_case(case, kernel, out);
                    let status = match &outcome {
                        Ok(o) => {
                            format!("{} ({:.1} s)", o.verdict.label(), o.duration.as_secs_f64())
                        }
                        Err(_) => "ERROR".to_owned(),
                    };
                    println!("{:<54} {status}", case.name());
                    *outcomes[index]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| Err(anyhow::anyhow!("case did not run")))
        })
        .collect()
}

/// Builds the case's ISO, boots it and decides the outcome.
fn run_case(case: &Case, kernel: &Path, out: &Path) -> Result<Outcome> {
    let dir = out.join(case.name());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let iso = image::make_iso(&dir, kernel, &case.command_line())?;
    let run = emulator::boot(&case.machine, &iso, &dir)?;
    // A run that never wrote to the serial port leaves no file.
    let serial = fs::read_to_string(&run.serial_log).unwrap_or_default();
    let signal = Signal::from_status(&case.machine, run.status);
    Ok(Outcome {
        verdict: verdict::decide(&serial, signal, emulator::TIME_LIMIT_SECS),
        duration: run.duration,
        serial_log: run.serial_log,
    })
}

/// The repository root: xtask's manifest directory's parent.
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|&word| word.to_owned()).collect()
    }

    #[test]
    fn no_options_run_the_default_matrix() {
        let options = Options::parse(&[]).unwrap();
        assert_eq!(options.cases(), matrix::default_matrix());
    }

    #[test]
    fn model_and_cpus_run_one_bochs_case() {
        let options =
            Options::parse(&args(&["--model", "corei7_haswell_4770", "--cpus", "2"])).unwrap();
        let cases = options.cases();
        assert_eq!(cases.len(), 1);
        assert_eq!(
            cases[0].machine,
            matrix::Machine::Bochs {
                model: "corei7_haswell_4770".into(),
                cpus: 2
            }
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Options::parse(&args(&["--cpus"])).is_err());
        assert!(Options::parse(&args(&["--cpus", "0"])).is_err());
        assert!(Options::parse(&args(&["--frobnicate"])).is_err());
    }
}
