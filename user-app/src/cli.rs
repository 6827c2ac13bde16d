//! The command line, a contract that scripts and tests depend on:
//!
//! - `vmx-check [check] [--json] [--replay FILE]`: diagnose this machine or
//!   a saved dump; exit 0 ready, 1 not ready, 2 undetermined.
//! - `vmx-check dump [-o FILE]`: capture this machine's raw values.
//! - `vmx-check on | off | status` (Windows, with nt-driver loaded): enter
//!   VMX operation on every processor, leave it, or show each processor's
//!   state; exit 0 when done, 1 when refused or the driver is unreachable.
//!
//! Usage errors exit 64; an input file that is unreadable or not a valid
//! dump exits 65. Errors go to stderr and say what to do.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::backend::this_machine;
use crate::dump::Dump;
use crate::report::MachineReport;
use crate::{diagnose_dump, diagnose_machine};

/// Exit status: VT-x is ready.
pub const EXIT_READY: u8 = 0;
/// Exit status: not ready, for a definite reason.
pub const EXIT_NOT_READY: u8 = 1;
/// Exit status: could not tell.
pub const EXIT_UNDETERMINED: u8 = 2;
/// Exit status: the command line is wrong (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit status: the input file is unreadable or not a valid dump (sysexits
/// `EX_DATAERR`).
pub const EXIT_BAD_INPUT: u8 = 65;
/// Exit status: the output could not be written (sysexits `EX_IOERR`).
pub const EXIT_OUTPUT: u8 = 74;

/// Can this machine run VT-x, and if not, why?
#[derive(Debug, Parser)]
#[command(name = "vmx-check", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Diagnose this machine, or a saved dump, and report (the default).
    Check(CheckArgs),
    /// Capture this machine's raw CPUID and MSR values as a vmx-dump/1 dump.
    Dump(DumpArgs),
    /// Windows, with nt-driver loaded: enter VMX operation on every
    /// processor (or on none, saying which refused and why).
    On,
    /// Windows, with nt-driver loaded: leave VMX operation wherever the
    /// driver entered it.
    Off,
    /// Windows, with nt-driver loaded: each processor's VMX state.
    Status,
}

/// The driver commands, by name.
#[derive(Debug, Clone, Copy)]
enum DriverCommand {
    On,
    Off,
    Status,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Print the report as one JSON object (format vmx-report/1).
    #[arg(long)]
    json: bool,
    /// Diagnose a vmx-dump/1 dump instead of this machine ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// Write the dump to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs the command line `args` (program name first) and returns the exit
/// status.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    match cli.command {
        None => check(&cli.check),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Dump(args)) => dump(&args),
        Some(Command::On) => driver(DriverCommand::On),
        Some(Command::Off) => driver(DriverCommand::Off),
        Some(Command::Status) => driver(DriverCommand::Status),
    }
}

/// `on`, `off` and `status`: requests to nt-driver.
#[cfg(windows)]
fn driver(command: DriverCommand) -> u8 {
    use crate::backend::windows;
    let result = match command {
        DriverCommand::On => windows::on(),
        DriverCommand::Off => windows::off(),
        DriverCommand::Status => windows::status(),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            EXIT_READY
        }
        Err(e) => {
            eprintln!("vmx-check: {e:#}");
            EXIT_NOT_READY
        }
    }
}

#[cfg(not(windows))]
fn driver(command: DriverCommand) -> u8 {
    let name = match command {
        DriverCommand::On => "on",
        DriverCommand::Off => "off",
        DriverCommand::Status => "status",
    };
    eprintln!(
        "vmx-check: `{name}` talks to the Windows driver (nt-driver) and exists on Windows only; \
         here, `vmx-check check` diagnoses this machine"
    );
    EXIT_USAGE
}

fn check(args: &CheckArgs) -> u8 {
    let report = match &args.replay {
        Some(path) => match load(path) {
            Ok(dump) => {
                let mut report = diagnose_dump(&dump);
                report.source = format!("dump {}: {}", path.display(), report.source);
                report
            }
            Err(e) => {
                eprintln!("vmx-check: {e:#}");
                return EXIT_BAD_INPUT;
            }
        },
        None => match live() {
            Ok((report, _)) => report,
            Err(e) => {
                eprintln!(
                    "vmx-check: {e:#}\nvmx-check: undetermined: capture a dump on the machine \
                     with `vmx-check dump -o FILE` and check it with --replay FILE"
                );
                return EXIT_UNDETERMINED;
            }
        },
    };
    let text = if args.json {
        for note in &report.notes {
            eprintln!("vmx-check: note: {note}");
        }
        let mut text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        text.push('\n');
        text
    } else {
        report.to_text()
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => report.exit_code(),
        Err(e) => {
            eprintln!("vmx-check: cannot write the report: {e}");
            EXIT_OUTPUT
        }
    }
}

fn dump(args: &DumpArgs) -> u8 {
    let (report, dump) = match live() {
        Ok(captured) => captured,
        Err(e) => {
            eprintln!("vmx-check: cannot capture this machine: {e:#}");
            return EXIT_UNDETERMINED;
        }
    };
    for note in &report.notes {
        eprintln!("vmx-check: note: {note}");
    }
    let text = dump.to_json();
    let written = match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}: check the path", path.display())),
        None => io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("cannot write the dump to stdout"),
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vmx-check: {e:#}");
            EXIT_OUTPUT
        }
    }
}

fn live() -> anyhow::Result<(MachineReport, Dump)> {
    let mut machine = this_machine()?;
    diagnose_machine(machine.as_mut())
}

/// Reads and parses a dump; `-` is stdin.
fn load(path: &Path) -> anyhow::Result<Dump> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the dump from stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}: check the path; make a dump with `vmx-check dump -o FILE`",
                path.display()
            )
        })?;
    }
    Dump::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid vmx-dump/1 dump: {e}\nvmx-check: fix that field, or make a new dump \
             with `vmx-check dump -o FILE`",
            path.display()
        )
    })
}
