//! Linux: CPUID on each processor with the thread pinned to it, MSRs
//! through the msr driver's `/dev/cpu/N/msr`.
//!
//! The msr driver answers `pread(fd, buf, 8, msr)` with the MSR's value, and
//! with `EIO` when RDMSR raised #GP (`arch/x86/kernel/msr.c`). The device
//! needs root (CAP_SYS_RAWIO) and the module loaded (`modprobe msr`); without
//! them the checker goes on with CPUID and says so.
//!
//! Pinning uses `nix`'s `sched_getaffinity`/`sched_setaffinity`: a
//! maintained, safe wrapper over the syscalls and `cpu_set_t`, which keeps
//! this crate free of `unsafe` (raw `libc` would need it for `CPU_SET` and
//! the calls).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observe};

use super::Machine;

/// Where the msr driver's devices live.
pub const MSR_ROOT: &str = "/dev/cpu";

/// This Linux machine.
#[derive(Debug)]
pub struct LinuxMachine {
    msr_root: PathBuf,
    notes: BTreeSet<String>,
    /// The affinity the thread had, restored after each processor.
    original: Option<CpuSet>,
}

impl Default for LinuxMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxMachine {
    /// Reads MSRs from `/dev/cpu/N/msr`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_msr_root(MSR_ROOT)
    }

    /// Reads MSRs from `root/N/msr`: for tests, with files laid out like
    /// the msr driver's devices (the value of MSR `m` in bytes `m..m + 8`).
    #[must_use]
    pub fn with_msr_root(root: impl Into<PathBuf>) -> Self {
        Self {
            msr_root: root.into(),
            notes: BTreeSet::new(),
            original: None,
        }
    }

    fn affinity(&mut self) -> anyhow::Result<CpuSet> {
        if let Some(set) = self.original {
            return Ok(set);
        }
        let set = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
        self.original = Some(set);
        Ok(set)
    }
}

impl Machine for LinuxMachine {
    fn source(&self) -> String {
        format!(
            "live on Linux: CPUID on each processor (thread pinned), MSRs through {}/N/msr, \
             CR0/CR4 unknown in user mode",
            self.msr_root.display()
        )
    }

    fn processors(&mut self) -> anyhow::Result<Vec<u32>> {
        let set = self.affinity()?;
        Ok((0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .filter_map(|cpu| u32::try_from(cpu).ok())
            .collect())
    }

    fn observe(&mut self, cpu: u32, visit: &mut dyn FnMut(&mut dyn Observe)) -> anyhow::Result<()> {
        let original = self.affinity()?;
        let mut only = CpuSet::new();
        only.set(cpu as usize)
            .with_context(|| format!("processor {cpu} is beyond the CPU set"))?;
        sched_setaffinity(Pid::from_raw(0), &only)
            .with_context(|| format!("cannot run on processor {cpu}"))?;
        let mut observer = LinuxCpu::new(&self.msr_root, cpu);
        visit(&mut observer);
        if let Some(note) = observer.note {
            self.notes.insert(note);
        }
        sched_setaffinity(Pid::from_raw(0), &original).context("restoring the CPU affinity")?;
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.iter().cloned().collect()
    }
}

/// One processor: CPUID on the processor the thread is pinned to, MSRs from
/// `root/N/msr`.
#[derive(Debug)]
pub struct LinuxCpu {
    path: PathBuf,
    device: Option<io::Result<File>>,
    /// Why MSRs could not be read, once.
    pub note: Option<String>,
}

impl LinuxCpu {
    /// Observes processor `cpu`, its MSR device at `root/cpu/msr`. The
    /// caller pins the thread to `cpu` for CPUID.
    #[must_use]
    pub fn new(root: &Path, cpu: u32) -> Self {
        Self {
            path: root.join(cpu.to_string()).join("msr"),
            device: None,
            note: None,
        }
    }

    fn unavailable(&mut self, why: &str) -> MsrRead {
        self.note.get_or_insert_with(|| {
            format!(
                "MSRs not read ({why}): run as root with the msr module loaded \
                 (`sudo modprobe msr`) to read IA32_FEATURE_CONTROL and the VMX capability MSRs"
            )
        });
        MsrRead::Unavailable
    }
}

/// What an error reading the msr device means: `EIO` is the driver's
/// answer when RDMSR raised #GP; anything else means the MSR was not read.
#[must_use]
pub fn classify(error: &io::Error) -> MsrRead {
    if error.raw_os_error() == Some(Errno::EIO as i32) {
        MsrRead::Faulted
    } else {
        MsrRead::Unavailable
    }
}

impl Observe for LinuxCpu {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        Some(vmx_arch::cpuid(leaf, subleaf))
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        let path = self.path.clone();
        let device = self.device.get_or_insert_with(|| File::open(&path));
        let file = match device {
            Ok(file) => file,
            Err(e) => {
                let why = format!("{}: {e}", path.display());
                return self.unavailable(&why);
            }
        };
        let mut bytes = [0u8; 8];
        match file.read_at(&mut bytes, u64::from(msr)) {
            Ok(8) => MsrRead::Value(u64::from_le_bytes(bytes)),
            Ok(n) => {
                let why = format!("{}: {n} bytes at {msr:#x}", path.display());
                self.unavailable(&why)
            }
            Err(e) => match classify(&e) {
                MsrRead::Faulted => MsrRead::Faulted,
                _ => {
                    let why = format!("{}: {e}", path.display());
                    self.unavailable(&why)
                }
            },
        }
    }

    fn cr0(&mut self) -> Option<u64> {
        None
    }

    fn cr4(&mut self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_is_a_fault_and_the_rest_is_unavailable() {
        assert_eq!(
            classify(&io::Error::from_raw_os_error(Errno::EIO as i32)),
            MsrRead::Faulted
        );
        for errno in [Errno::ENOENT, Errno::EACCES, Errno::EPERM, Errno::ENXIO] {
            assert_eq!(
                classify(&io::Error::from_raw_os_error(errno as i32)),
                MsrRead::Unavailable
            );
        }
    }

    #[test]
    fn processors_are_those_the_thread_may_run_on() {
        let mut machine = LinuxMachine::new();
        let cpus = machine.processors().unwrap();
        assert!(!cpus.is_empty());
        // available_parallelism also honours cgroup quotas: never more.
        assert!(cpus.len() >= std::thread::available_parallelism().unwrap().get());
    }
}
