//! `cargo xtask e2e [--model NAME] [--cpus N] [--expect VERDICT] [--dump DIR]`:
//! builds the bare-metal test kernel (`e2e-kernel/`), boots it in emulators,
//! and checks what it reports.
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
//! should give: `not-intel` for AMD models, `ready` otherwise). `--dump DIR`
//! runs the kernel's `dump` scenario on the machines of
//! [`matrix::dump_matrix`] and writes each `vmx-dump/1` document to
//! `DIR/bochs-<model>[-unlocked].json` ([`dump`]); every dump case also
//! replays its dump through the checker (`user-app`).

mod dump;
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

use matrix::{Case, DEFAULT_MODEL, Scenario};
use verdict::{Signal, Verdict};

/// The width of the case-name column: the longest default case name.
const NAME_WIDTH: usize = 56;

/// Emulators running at once: this is CPU-bound work on a two-core machine.
const PARALLEL_RUNS: usize = 2;

/// The command-line options.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    model: Option<String>,
    cpus: Option<u32>,
    expect: Option<&'static str>,
    dump: Option<PathBuf>,
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
const USAGE: &str = "usage: cargo xtask e2e [--model NAME] [--cpus N] [--expect VERDICT] [--dump DIR]
  (no options)      the default matrix
  --model NAME      one Bochs enter-leave case on CPU model NAME (default corei7_skylake_x)
  --cpus N          ... with N processors (1-16, default 1)
  --expect VERDICT  ... requiring vmx-core's diagnosis VERDICT (default: not-intel for AMD models, else ready)
  --dump DIR        dump what vmx-core reads on several Bochs machines to DIR/bochs-<model>[-unlocked].json";

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
                "--dump" => options.dump = Some(PathBuf::from(value()?)),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        if options.dump.is_some()
            && (options.model.is_some() || options.cpus.is_some() || options.expect.is_some())
        {
            bail!("--dump runs its own machines: it takes no --model, --cpus or --expect");
        }
        Ok(options)
    }

    fn cases(&self) -> Vec<Case> {
        if self.dump.is_some() {
            return matrix::dump_matrix();
        }
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
    /// A dump case's dump, when the kernel printed a valid one.
    dump: Option<PathBuf>,
}

/// What every case needs.
#[derive(Debug)]
struct Setup {
    repo: PathBuf,
    kernel: PathBuf,
    out: PathBuf,
    /// Why the checker cannot replay dumps, if it cannot.
    checker: Result<(), String>,
}

/// Runs `cargo xtask e2e` with the arguments after `e2e`.
///
/// # Errors
/// When a tool is missing, the kernel does not build, or any case fails.
pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let options = Options::parse(args)?;
    let cases = options.cases();
    let repo = repo_root();
    let kernel = image::build_kernel(&repo)?;
    let checker = if cases
        .iter()
        .any(|case| matches!(case.scenario, Scenario::Dump { .. }))
    {
        dump::build_checker(&repo).map_err(|error| format!("{error:#}"))
    } else {
        Ok(())
    };
    let setup = Setup {
        out: repo.join("target/e2e"),
        repo,
        kernel,
        checker,
    };

    let start = Instant::now();
    let outcomes = run_cases(&cases, &setup);
    let wall = start.elapsed();

    println!();
    println!(
        "{:<NAME_WIDTH$} {:>13}  {:<6} {:>7}",
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
            "{:<NAME_WIDTH$} {:>13}  {:<6} {:>7}",
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
    if let Some(dir) = &options.dump {
        copy_dumps(&cases, &outcomes, dir)?;
    }
    if failures > 0 {
        bail!("{failures} of {} e2e cases failed", cases.len());
    }
    Ok(())
}

/// Copies the dumps of `cases` to `dir` under their file names.
fn copy_dumps(cases: &[Case], outcomes: &[Result<Outcome>], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (case, outcome) in cases.iter().zip(outcomes) {
        let Ok(Outcome {
            dump: Some(dump), ..
        }) = outcome
        else {
            println!("{}: no dump", case.name());
            continue;
        };
        let target = dir.join(case.dump_file_name());
        fs::copy(dump, &target).with_context(|| format!("writing {}", target.display()))?;
        println!("wrote {}", target.display());
    }
    Ok(())
}

/// Runs every case, [`PARALLEL_RUNS`] at a time, those with the most
/// processors (the slowest in Bochs) first; the outcomes in case order.
fn run_cases(cases: &[Case], setup: &Setup) -> Vec<Result<Outcome>> {
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
                    let outcome = run_case(case, setup);
                    let status = match &outcome {
                        Ok(o) => {
                            format!("{} ({:.1} s)", o.verdict.label(), o.duration.as_secs_f64())
                        }
                        Err(_) => "ERROR".to_owned(),
                    };
                    println!("{:<NAME_WIDTH$} {status}", case.name());
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
fn run_case(case: &Case, setup: &Setup) -> Result<Outcome> {
    let dir = setup.out.join(case.name());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dump_file = dir.join("dump.json");
    // A stale dump must not pass for this run's.
    if dump_file.exists() {
        fs::remove_file(&dump_file)?;
    }
    let iso = image::make_iso(&dir, &setup.kernel, &case.command_line())?;
    let run = emulator::boot(&case.machine, &iso, &dir)?;
    // A run that never wrote to the serial port leaves no file.
    let serial = fs::read_to_string(&run.serial_log).unwrap_or_default();
    let signal = Signal::from_status(&case.machine, run.status);
    let mut verdict = verdict::decide(&serial, signal, emulator::TIME_LIMIT_SECS);
    let mut dump = None;
    if let (Verdict::Pass(summary), Scenario::Dump { expect }) = (&verdict, case.scenario) {
        let bochs_log = fs::read_to_string(dir.join("bochs.log")).unwrap_or_default();
        let replayed = dump::extract(&serial)
            .and_then(|text| {
                let source = dump::source(&case.machine, &bochs_log);
                dump::complete(&text, &source, case.machine.cpus())
            })
            .and_then(|document| {
                fs::write(&dump_file, document)
                    .with_context(|| format!("writing {}", dump_file.display()))?;
                dump = Some(dump_file.clone());
                setup.checker.clone().map_err(anyhow::Error::msg)?;
                dump::replay(&setup.repo, &dump_file, expect)
            });
        verdict = match replayed {
            Ok(()) => Verdict::Pass(format!("{summary} replayed={expect}")),
            Err(error) => Verdict::Fail(format!("{error:#} (dump: {})", dump_file.display())),
        };
    }
    Ok(Outcome {
        verdict,
        duration: run.duration,
        serial_log: run.serial_log,
        dump,
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
                cpus: 2,
                firmware: matrix::Firmware::BochsBios,
            }
        );
    }

    #[test]
    fn case_names_fit_the_table() {
        let cases = matrix::default_matrix()
            .into_iter()
            .chain(matrix::dump_matrix());
        for case in cases {
            assert!(case.name().len() <= NAME_WIDTH, "{}", case.name());
        }
    }

    #[test]
    fn dump_runs_the_dump_matrix_alone() {
        let options = Options::parse(&args(&["--dump", "fixtures"])).unwrap();
        assert_eq!(options.dump.as_deref(), Some(Path::new("fixtures")));
        assert_eq!(options.cases(), matrix::dump_matrix());
        assert!(Options::parse(&args(&["--dump", "x", "--cpus", "2"])).is_err());
        assert!(Options::parse(&args(&["--dump"])).is_err());
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Options::parse(&args(&["--cpus"])).is_err());
        assert!(Options::parse(&args(&["--cpus", "0"])).is_err());
        assert!(Options::parse(&args(&["--frobnicate"])).is_err());
    }
}
