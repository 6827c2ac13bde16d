//! Booting an ISO in Bochs or QEMU, with the serial output in a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::matrix::{Firmware, Machine};

/// The time limit of one boot, seconds. SIGTERM does not stop Bochs:
/// `timeout` sends SIGKILL.
pub const TIME_LIMIT_SECS: u64 = 60;

/// Bochs' BIOS: it locks `IA32_FEATURE_CONTROL` with VMX enabled (0x5).
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// SeaBIOS: it leaves `IA32_FEATURE_CONTROL` unlocked (0x0).
const SEABIOS: &str = "/usr/share/seabios/bios.bin";
/// Memory of every Bochs machine, MiB.
const MEGS: u32 = 64;
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
        Machine::Bochs {
            model,
            cpus,
            firmware,
        } => {
            let mut config_text = bochsrc(model, *cpus, iso, &serial_log, &dir.join("bochs.log"));
            match firmware {
                Firmware::BochsBios => {
                    config_text.push_str(&format!("romimage: file={BOCHS_BIOS}\n"))
                }
                Firmware::SeaBios => {
                    let cmos = dir.join("cmos.img");
                    fs::write(&cmos, seabios_cmos(MEGS, *cpus))?;
                    config_text.push_str(&format!(
                        "romimage: file={SEABIOS}\ncmosimage: file={}, rtc_init=time0\n",
                        cmos.display()
                    ));
                }
            }
            let config = dir.join("bochsrc");
            fs::write(&config, config_text)?;
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

/// A Bochs configuration for `cpus` processors of CPU `model` booting `iso`,
/// without its `romimage:` line.
///
/// `ips=1000000`, Bochs' lowest, with `clock: sync=none`: emulated time
/// advances by instructions, so the firmware's and GRUB's timed waits cost
/// 4 times fewer instructions than at the default 4,000,000 (a 4-processor
/// boot: 51 → 41 million ticks, about a fifth less host CPU time). The
/// kernel's own waits (`pit::sleep_us`) are emulated time too and keep
/// their meaning.
fn bochsrc(model: &str, cpus: u32, iso: &Path, serial_log: &Path, log: &Path) -> String {
    format!(
        "\
cpu: model={model}, count={cpus}, ips=1000000, reset_on_triple_fault=0
megs: {MEGS}
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

/// The CMOS RAM image a SeaBIOS machine starts with (Bochs' `cmosimage:`).
///
/// Without QEMU's fw_cfg interface, which Bochs lacks, SeaBIOS takes the
/// processor count from CMOS byte 0x5F (count - 1, QEMU's convention) and
/// lists only that many processors in its ACPI MADT; Bochs leaves the byte
/// 0, so the kernel would see one processor. With an image, Bochs fills in
/// nothing itself: the image also carries the memory size and the boot
/// device, the other CMOS bytes SeaBIOS reads.
fn seabios_cmos(megs: u32, cpus: u32) -> [u8; 128] {
    let mut cmos = [0; 128];
    // RTC status A (divider, rate), B (24-hour mode), D (valid RAM/time).
    cmos[0x0a] = 0x26;
    cmos[0x0b] = 0x02;
    cmos[0x0d] = 0x80;
    // Base memory, KiB: 640.
    cmos[0x15..0x17].copy_from_slice(&640u16.to_le_bytes());
    // Memory from 1 MiB up to 16 MiB, KiB (twice: 0x17 and 0x30).
    let extended = u16::try_from((megs.clamp(1, 16) - 1) * 1024).unwrap_or(u16::MAX);
    cmos[0x17..0x19].copy_from_slice(&extended.to_le_bytes());
    cmos[0x30..0x32].copy_from_slice(&extended.to_le_bytes());
    // Memory above 16 MiB, in 64 KiB units.
    let high = u16::try_from(megs.saturating_sub(16) * 16).unwrap_or(u16::MAX);
    cmos[0x34..0x36].copy_from_slice(&high.to_le_bytes());
    // Boot order (QEMU's convention, first device in bits 3:0): 3 = CD-ROM.
    cmos[0x3d] = 0x03;
    // Processors - 1.
    cmos[0x5f] = u8::try_from(cpus.saturating_sub(1)).unwrap_or(u8::MAX);
    cmos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seabios_cmos_holds_memory_boot_device_and_processor_count() {
        let cmos = seabios_cmos(64, 2);
        assert_eq!(cmos[0x5f], 1);
        assert_eq!(cmos[0x3d], 3);
        // 15 MiB between 1 and 16 MiB, 48 MiB above it in 64 KiB units.
        assert_eq!(u16::from_le_bytes([cmos[0x30], cmos[0x31]]), 15 * 1024);
        assert_eq!(u16::from_le_bytes([cmos[0x34], cmos[0x35]]), 48 * 16);
    }

    #[test]
    fn the_common_configuration_leaves_the_rom_to_the_firmware() {
        let text = bochsrc(
            "tigerlake",
            4,
            Path::new("/x/e2e.iso"),
            Path::new("/x/serial.log"),
            Path::new("/x/bochs.log"),
        );
        assert!(text.contains("cpu: model=tigerlake, count=4,"));
        assert!(!text.lines().any(|line| line.starts_with("romimage:")));
    }
}
