//! Deciding a case: the kernel's final serial line and the emulator's exit
//! status must agree.

use std::process::ExitStatus;

use super::matrix::Machine;

/// The prefix of the kernel's one final line.
const RESULT_PREFIX: &str = "E2E RESULT: ";

/// QEMU's exit status for the kernel's PASS signal: isa-debug-exit exits with
/// `value * 2 + 1`, and the kernel writes 0x10 (`e2e-kernel/src/exit.rs`).
const QEMU_PASS_STATUS: i32 = 0x10 * 2 + 1;
/// QEMU's exit status for the kernel's FAIL signal (0x11).
const QEMU_FAIL_STATUS: i32 = 0x11 * 2 + 1;
/// Bochs' exit status after the magic breakpoint and the debugger's `quit`.
const BOCHS_PASS_STATUS: i32 = 0;
/// Bochs' exit status after "Shutdown" on port 0x8900 (a fatal panic).
const BOCHS_FAIL_STATUS: i32 = 1;
/// `timeout -s KILL` killed the emulator: 128 + SIGKILL.
const KILLED_STATUS: i32 = 128 + 9;

/// What the emulator's exit status says the kernel signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The kernel's PASS signal.
    Pass,
    /// The kernel's FAIL signal.
    Fail,
    /// The run hit the time limit.
    Killed,
    /// Anything else: the emulator stopped for a reason of its own.
    Other(Option<i32>),
}

impl Signal {
    /// Decodes the exit status of the emulator (run under `timeout`).
    pub fn from_status(machine: &Machine, status: ExitStatus) -> Self {
        let code = status.code();
        match (machine, code) {
            (_, Some(KILLED_STATUS)) => Self::Killed,
            (Machine::Bochs { .. }, Some(BOCHS_PASS_STATUS))
            | (Machine::QemuTcg { .. }, Some(QEMU_PASS_STATUS)) => Self::Pass,
            (Machine::Bochs { .. }, Some(BOCHS_FAIL_STATUS))
            | (Machine::QemuTcg { .. }, Some(QEMU_FAIL_STATUS)) => Self::Fail,
            _ => Self::Other(code),
        }
    }
}

/// The outcome of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// PASS line and PASS signal; the line's summary.
    Pass(String),
    /// Anything else, with the reason.
    Fail(String),
}

impl Verdict {
    /// `PASS` or `FAIL`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass(_) => "PASS",
            Self::Fail(_) => "FAIL",
        }
    }
}

/// Decides a case from the kernel's serial output and the emulator's signal.
pub fn decide(serial: &str, signal: Signal, time_limit_secs: u64) -> Verdict {
    let results: Vec<&str> = serial
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(RESULT_PREFIX))
        .collect();
    let line = match results.as_slice() {
        [] => None,
        [line] => Some(*line),
        _ => return Verdict::Fail(format!("{} result lines, expected one", results.len())),
    };
    match (line, signal) {
        (Some(line), Signal::Pass) if line.starts_with("PASS") => {
            Verdict::Pass(line["PASS".len()..].trim().to_owned())
        }
        (Some(line), Signal::Fail) if line.starts_with("FAIL") => {
            Verdict::Fail(line["FAIL".len()..].trim().to_owned())
        }
        (_, Signal::Killed) => Verdict::Fail(format!(
            "killed after {time_limit_secs} s (last result: {})",
            line.unwrap_or("none")
        )),
        (None, signal) => Verdict::Fail(format!("no result line (emulator: {signal:?})")),
        (Some(line), signal) => Verdict::Fail(format!(
            "result line \"{line}\" disagrees with the emulator's exit ({signal:?})"
        )),
    }
}

/// `entered/left` from a summary's `entered=N left=M` words, if it has them.
pub fn entered_left(summary: &str) -> Option<String> {
    let value = |key: &str| {
        summary
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    };
    Some(format!("{}/{}", value("entered")?, value("left")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_line_and_pass_signal_pass() {
        let serial = "step\nE2E RESULT: PASS enter-leave entered=4 left=4\n";
        assert_eq!(
            decide(serial, Signal::Pass, 60),
            Verdict::Pass("enter-leave entered=4 left=4".into())
        );
    }

    #[test]
    fn fail_line_reports_its_reason() {
        let serial = "E2E RESULT: FAIL CR4 differs on processor 2\r\n";
        assert_eq!(
            decide(serial, Signal::Fail, 60),
            Verdict::Fail("CR4 differs on processor 2".into())
        );
    }

    #[test]
    fn pass_line_with_fail_signal_fails() {
        let verdict = decide("E2E RESULT: PASS x\n", Signal::Fail, 60);
        assert!(matches!(verdict, Verdict::Fail(reason) if reason.contains("disagrees")));
    }

    #[test]
    fn pass_signal_without_line_fails() {
        let verdict = decide("booted\n", Signal::Pass, 60);
        assert!(matches!(verdict, Verdict::Fail(reason) if reason.starts_with("no result line")));
    }

    #[test]
    fn two_result_lines_fail() {
        let serial = "E2E RESULT: PASS a\nE2E RESULT: PASS b\n";
        assert!(matches!(decide(serial, Signal::Pass, 60), Verdict::Fail(_)));
    }

    #[test]
    fn killed_run_fails() {
        let verdict = decide("booted\n", Signal::Killed, 60);
        assert!(
            matches!(verdict, Verdict::Fail(reason) if reason.starts_with("killed after 60 s"))
        );
    }

    #[test]
    fn exit_statuses_map_per_emulator() {
        use std::os::unix::process::ExitStatusExt;
        let bochs = Machine::Bochs {
            model: "tigerlake".into(),
            cpus: 1,
            firmware: super::super::matrix::Firmware::BochsBios,
        };
        let qemu = Machine::QemuTcg { cpus: 1 };
        // A wait status holds the exit code in bits 15:8.
        let exit = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(Signal::from_status(&bochs, exit(0)), Signal::Pass);
        assert_eq!(Signal::from_status(&bochs, exit(1)), Signal::Fail);
        assert_eq!(Signal::from_status(&qemu, exit(33)), Signal::Pass);
        assert_eq!(Signal::from_status(&qemu, exit(35)), Signal::Fail);
        assert_eq!(Signal::from_status(&qemu, exit(0)), Signal::Other(Some(0)));
        assert_eq!(Signal::from_status(&qemu, exit(137)), Signal::Killed);
    }

    #[test]
    fn entered_left_reads_the_summary() {
        assert_eq!(
            entered_left("enter-leave entered=4 left=4").as_deref(),
            Some("4/4")
        );
        assert_eq!(entered_left("boot processors=2"), None);
    }
}
