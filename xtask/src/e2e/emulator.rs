//! Booting an ISO in Bochs or QEMU, with the serial output in a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::matrix::Machine;

/// The time limit of one boot, seconds. SIGTERM does not stop Bochs:
/// `timeout` sends SIGKILL.
pub const TIME_LIMIT_SECS: u64 = 60;

/// Bochs' BIOS: it locks `IA32_FEATURE_CONTROL` with VMX enabled (0x5).
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The VGA BIOS (package vgabios).
const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// A finished boot.
#[derive(Debug)]
pub struct Run {
    /// The emulator's exit status.
    pub status: ExitStatus,
    /// Wall time.
    pub duration: Duration,
    /// The kernel's serial output.
    pub serial_log: PathBuf,
}

/// Boots `iso` on `machine`; every file goes to `dir`.
///
/// # Errors
/// When a file cannot be written or the emulator cannot be started.
pub fn boot(machine: &Machine, iso: &Path, dir: &Path) -> Result<Run> {
    let serial_log = dir.join("serial.log");
    // A stale log must not pass for this run's output.
    if serial_log.exists() {
        fs::remove_file(&serial_log)?;
    }
    let mut command = Command::new("timeout");
    command.args(["-s", "KILL", &TIME_LIMIT_SECS.to_string()]);
    match machine {
        Machine::Bochs { model, cpus } => {
            let config = dir.join("bochsrc");
            fs::write(
                &config,
                bochsrc(model, *cpus, iso, &serial_log, &dir.join("bochs.log")),
            )?;
            // Run to the magic breakpoint, then leave the debugger.
            let debugger_commands = dir.join("bochs-debugger.rc");
            fs::write(&debugger_commands, "continue\nquit\n")?;
            command
                .args(["bochs-bin", "-q", "-f"])
                .arg(&config)
                .arg("-rc")
                .arg(&debugger_commands)
                // The term display library needs a terminal type; its screen
                // goes to the stdout file below.
                .env("TERM", "xterm");
        }
        Machine::QemuTcg { cpus } => {
            command
                // TCG offers no VMX; an Intel vendor string makes the
                // diagnosis "a guest without nested VT-x" rather than
                // "not Intel" (QEMU's default qemu64 CPU says AuthenticAMD).
                .args([
                    "qemu-system-x86_64",
                    "-accel",
                    "tcg",
                    "-cpu",
                    "qemu64,vendor=GenuineIntel",
                ])
                .args(["-m", "64", "-smp"])
                .arg(cpus.to_string())
                .arg("-cdrom")
                .arg(iso)
                .arg("-serial")
                .arg(format!("file:{}", serial_log.display()))
                .args([
                    "-display",
                    "none",
                    "-no-reboot",
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                ]);
        }
    }
    let stdout = fs::File::create(dir.join("emulator.stdout"))?;
    let stderr = fs::File::create(dir.join("emulator.stderr"))?;
    let start = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .with_context(|| {
            format!("starting {machine} (apt-get install bochs bochsbios vgabios qemu-system-x86)")
        })?;
    Ok(Run {
        status,
        duration: start.elapsed(),
        serial_log,
    })
}

/// A Bochs configuration for `cpus` processors of CPU `model` booting `iso`.
fn bochsrc(model: &str, cpus: u32, iso: &Path, serial_log: &Path, log: &Path) -> String {
    format!(
        "\
cpu: model={model}, count={cpus}, reset_on_triple_fault=0
megs: 64
romimage: file={BOCHS_BIOS}
vgaromimage: file={VGA_BIOS}
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={serial_log}
display_library: term
magic_break: enabled=1
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
clock: sync=none
log: {log}
",
        iso = iso.display(),
        serial_log = serial_log.display(),
        log = log.display(),
    )
}
