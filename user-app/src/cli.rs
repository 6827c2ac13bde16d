//! The command line, a contract that scripts and tests depend on:
//!
//! - `vmx-check [check] [--json] [--replay FILE] [-q]`: diagnose this
//!   machine or a saved dump; exit 0 ready, 1 not ready, 2 undetermined.
//! - `vmx-check dump [-o FILE]`: capture this machine's raw values (`-o -`
//!   or no `-o`: stdout).
//! - `vmx-check on | off | status` (Windows, with nt-driver loaded): enter
//!   VMX operation on every processor, leave it, or show each processor's
//!   state; exit 0 when done, 1 when refused or the driver is unreachable.
//!
//! Options may come before or after the command (`vmx-check --json
//! check`). `-q` prints nothing but errors: the exit code is the answer. A
//! closed stdout (`| head -1`) ends quietly with the exit code the command
//! would have had. Usage errors exit 64; an input file that is unreadable,
//! too large or not a valid dump exits 65; output that cannot be written
//! exits 74. Errors go to stderr and say what to do.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use vmx_core::Verdict;

use crate::backend::this_machine;
use crate::dump::{Dump, MAX_BYTES, ReadError, read_limited};
use crate::report::{MachineReport, escape_controls, exit_code};
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
#[command(name = "vmx-check", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Print the report as one JSON object (format vmx-report/1).
    #[arg(long, global = true)]
    json: bool,
    /// Diagnose a vmx-dump/1 dump instead of this machine ("-" reads stdin).
    #[arg(long, value_name = "FILE", global = true)]
    replay: Option<PathBuf>,
    /// Print nothing but errors: the exit code is the answer.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Diagnose this machine, or a saved dump, and report (the default).
    Check,
    /// Capture this machine's raw CPUID and MSR values (and on Linux what
    /// the kernel knows) as a vmx-dump/1 dump.
    Dump {
        /// Write the dump to FILE instead of stdout ("-" is stdout).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Windows only, with nt-driver loaded: enter VMX operation on every
    /// processor (or on none, saying which refused and why).
    On,
    /// Windows only, with nt-driver loaded: leave VMX operation wherever
    /// the driver entered it.
    Off,
    /// Windows only, with nt-driver loaded: each processor's VMX state.
    Status,
}

/// The driver commands, by name.
#[derive(Debug, Clone, Copy)]
enum DriverCommand {
    On,
    Off,
    Status,
}

impl DriverCommand {
    const fn name(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Status => "status",
        }
    }
}

/// `--help`'s closing text: the exit codes (the verdicts of each from
/// vmx-core) and examples.
fn after_help() -> String {
    let named = |code: u8| {
        Verdict::ALL
            .into_iter()
            .filter(|v| exit_code(*v) == code)
            .map(Verdict::name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Exit codes:
  0   {ready}: VT-x can be used
  1   not ready, for a definite reason: {one}
  2   {two}: run with the privilege to read MSRs (Linux: root and `modprobe msr`;
      Windows: the driver loaded)
  64  usage error
  65  the dump is unreadable, over {max} MiB or not a valid vmx-dump/1 dump
  74  the output could not be written

Examples:
  vmx-check                              diagnose this machine
  vmx-check -q && echo ready             the exit code alone
  vmx-check --json | jq -r .verdict      the report as JSON
  vmx-check dump -o this-machine.json    capture this machine's values ...
  vmx-check --replay this-machine.json   ... and diagnose them anywhere
  vmx-check on; vmx-check off            Windows only, with nt-driver loaded

`on`, `off` and `status` exist on Windows only; `check` and `dump` everywhere.",
        ready = named(0),
        one = named(1),
        two = named(2),
        max = MAX_BYTES >> 20,
    )
}

/// Writes a line to stderr; a closed stderr is not an error worth dying of.
fn warn(text: &str) {
    let _ = writeln!(io::stderr().lock(), "vmx-check: {text}");
}

/// How writing to stdout went.
enum Written {
    Done,
    /// The reader went away (`| head -1`): end quietly.
    Closed,
    Failed(io::Error),
}

fn to_stdout(bytes: &[u8]) -> Written {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Written::Done,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Written::Closed,
        Err(e) => Written::Failed(e),
    }
}

/// Runs the command line `args` (program name first) and returns the exit
/// status.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = Cli::command()
        .after_help(after_help())
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let command = match cli.command {
        None | Some(Command::Check) => return check(&cli),
        Some(Command::Dump { output }) => Ok(output),
        Some(Command::On) => Err(DriverCommand::On),
        Some(Command::Off) => Err(DriverCommand::Off),
        Some(Command::Status) => Err(DriverCommand::Status),
    };
    let name = command.as_ref().map_or_else(|d| d.name(), |_| "dump");
    if cli.json || cli.replay.is_some() {
        let option = if cli.json { "--json" } else { "--replay" };
        warn(&format!(
            "{option} applies to `check`, not to `{name}`: see `vmx-check --help`"
        ));
        return EXIT_USAGE;
    }
    match command {
        Ok(output) => dump(output.as_deref(), cli.quiet),
        Err(command) => driver(command, cli.quiet),
    }
}

/// `on`, `off` and `status`: requests to nt-driver.
#[cfg(windows)]
fn driver(command: DriverCommand, quiet: bool) -> u8 {
    use crate::backend::windows;
    let result = match command {
        DriverCommand::On => windows::on(),
        DriverCommand::Off => windows::off(),
        DriverCommand::Status => windows::status(),
    };
    match result {
        Ok(text) => {
            if !quiet {
                if let Written::Failed(e) = to_stdout(format!("{text}\n").as_bytes()) {
                    warn(&format!("cannot write to stdout: {e}"));
                    return EXIT_OUTPUT;
                }
            }
            EXIT_READY
        }
        Err(e) => {
            warn(&format!("{e:#}"));
            EXIT_NOT_READY
        }
    }
}

#[cfg(not(windows))]
fn driver(command: DriverCommand, _quiet: bool) -> u8 {
    warn(&format!(
        "`{}` talks to the Windows driver (nt-driver) and exists on Windows only; here, \
         `vmx-check check` diagnoses this machine",
        command.name()
    ));
    EXIT_USAGE
}

fn check(cli: &Cli) -> u8 {
    let report = match &cli.replay {
        Some(path) => match load(path) {
            Ok(dump) => {
                let mut report = diagnose_dump(&dump);
                report.source = format!("dump {}: {}", path.display(), report.source);
                report
            }
            Err(e) => {
                warn(&format!("{e:#}"));
                return EXIT_BAD_INPUT;
            }
        },
        None => match live() {
            Ok((report, _)) => report,
            Err(e) => {
                warn(&format!(
                    "{}\nvmx-check: undetermined: capture a dump on the machine with `vmx-check \
                     dump -o FILE` and check it with --replay FILE",
                    escape_controls(&format!("{e:#}"))
                ));
                return EXIT_UNDETERMINED;
            }
        },
    };
    if cli.quiet {
        return report.exit_code();
    }
    let text = if cli.json {
        for note in &report.all_notes() {
            warn(&format!("note: {}", escape_controls(note)));
        }
        report.to_json_text()
    } else {
        report.to_text()
    };
    match to_stdout(text.as_bytes()) {
        Written::Done | Written::Closed => report.exit_code(),
        Written::Failed(e) => {
            warn(&format!("cannot write the report: {e}"));
            EXIT_OUTPUT
        }
    }
}

fn dump(output: Option<&Path>, quiet: bool) -> u8 {
    let (report, dump) = match live() {
        Ok(captured) => captured,
        Err(e) => {
            warn(&format!(
                "cannot capture this machine: {}",
                escape_controls(&format!("{e:#}"))
            ));
            return EXIT_UNDETERMINED;
        }
    };
    if !quiet {
        for note in &report.notes {
            warn(&format!("note: {}", escape_controls(note)));
        }
    }
    let text = dump.to_json();
    match output.filter(|path| *path != Path::new("-")) {
        Some(path) => match std::fs::write(path, &text) {
            Ok(()) => 0,
            Err(e) => {
                warn(&format!(
                    "cannot write {}: {e}: check the path",
                    escape_controls(&path.display().to_string())
                ));
                EXIT_OUTPUT
            }
        },
        None => match to_stdout(text.as_bytes()) {
            Written::Done | Written::Closed => 0,
            Written::Failed(e) => {
                warn(&format!("cannot write the dump to stdout: {e}"));
                EXIT_OUTPUT
            }
        },
    }
}

fn live() -> anyhow::Result<(MachineReport, Dump)> {
    let mut machine = this_machine()?;
    diagnose_machine(machine.as_mut())
}

/// Reads and parses a dump; `-` is stdin. Reads at most [`MAX_BYTES`]
/// (a larger regular file is refused before reading).
fn load(path: &Path) -> anyhow::Result<Dump> {
    let name = escape_controls(&path.display().to_string()).into_owned();
    let remedy = "make a dump with `vmx-check dump -o FILE`";
    let read = if path == Path::new("-") {
        read_limited(io::stdin().lock())
    } else {
        let file = File::open(path)
            .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}: check the path; {remedy}"))?;
        match file.metadata() {
            Ok(meta) if meta.is_file() && meta.len() > MAX_BYTES => Err(ReadError::TooLarge),
            _ => read_limited(file),
        }
    };
    let bytes = read.map_err(|e| match e {
        ReadError::Io(e) => anyhow::anyhow!("cannot read {name}: {e}: check the path; {remedy}"),
        other => {
            anyhow::anyhow!("{name}: not a valid vmx-dump/1 dump: {other}\nvmx-check: {remedy}")
        }
    })?;
    Dump::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not a valid vmx-dump/1 dump: {}\nvmx-check: fix that field, or make a new \
             dump with `vmx-check dump -o FILE`",
            escape_controls(&e.to_string())
        )
    })
}
