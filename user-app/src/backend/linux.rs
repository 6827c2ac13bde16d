//! Linux: CPUID on each online processor with the thread pinned to it,
//! MSRs through the msr driver's `/dev/cpu/N/msr`, and what the kernel
//! already knows without root: each processor's `flags` and `vmx flags`
//! lines of `/proc/cpuinfo`, and KVM's module and parameters under
//! `/sys/module` (vmx-core's `linux_facts` decides what they mean).
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

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::unistd::Pid;
use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observe};
use vmx_core::linux_facts::{KvmIntel, VMX_MODULES};

use super::Machine;
use crate::dump::{CpuLinux, HostLinux};

/// Where the msr driver's devices live.
pub const MSR_ROOT: &str = "/dev/cpu";

/// The files the Linux backend reads, all overridable for tests.
#[derive(Debug, Clone)]
pub struct LinuxPaths {
    /// The msr driver's devices: `msr_root/N/msr`.
    pub msr_root: PathBuf,
    /// The online processors (`/sys/devices/system/cpu/online`).
    pub online: PathBuf,
    /// `/proc/cpuinfo`.
    pub cpuinfo: PathBuf,
    /// `/sys/module`: `kvm_intel/` exists when it is loaded, with
    /// `parameters/nested`; `kvm/parameters/enable_virt_at_load`.
    pub sys_module: PathBuf,
    /// `/proc/modules`.
    pub proc_modules: PathBuf,
    /// `/dev/kvm`.
    pub dev_kvm: PathBuf,
}

impl Default for LinuxPaths {
    fn default() -> Self {
        Self {
            msr_root: MSR_ROOT.into(),
            online: "/sys/devices/system/cpu/online".into(),
            cpuinfo: "/proc/cpuinfo".into(),
            sys_module: "/sys/module".into(),
            proc_modules: "/proc/modules".into(),
            dev_kvm: "/dev/kvm".into(),
        }
    }
}

/// This Linux machine.
#[derive(Debug)]
pub struct LinuxMachine {
    paths: LinuxPaths,
    notes: BTreeSet<String>,
    /// The affinity the thread had, restored after each processor.
    original: Option<CpuSet>,
    /// Whether any MSR answered (a value or a fault).
    msrs_read: bool,
    /// Each processor's `/proc/cpuinfo` lines, read once (`None`:
    /// unreadable).
    cpuinfo: Option<HashMap<u32, CpuLinux>>,
}

impl Default for LinuxMachine {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses a kernel CPU list such as `0-3,5,7-8` (`/sys/devices/system/cpu/online`).
/// `None` for anything else, or for more than 65536 processors.
#[must_use]
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (start, end) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let one = part.parse::<u32>().ok()?;
                (one, one)
            }
        };
        if end < start || cpus.len() + (end - start) as usize >= 1 << 16 {
            return None;
        }
        cpus.extend(start..=end);
    }
    Some(cpus)
}

/// Each processor's `flags` and `vmx flags` lines from `/proc/cpuinfo`
/// text, by its `processor` number.
#[must_use]
pub fn parse_cpuinfo(text: &str) -> HashMap<u32, CpuLinux> {
    let mut out = HashMap::new();
    for block in text.split("\n\n") {
        let mut cpu = None;
        let mut linux = CpuLinux::default();
        for line in block.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "processor" => cpu = value.parse::<u32>().ok(),
                "flags" => linux.cpuinfo_flags = Some(value.to_owned()),
                "vmx flags" => linux.cpuinfo_vmx_flags = Some(value.to_owned()),
                _ => {}
            }
        }
        if let Some(cpu) = cpu {
            out.insert(cpu, linux);
        }
    }
    out
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

impl LinuxMachine {
    /// Reads this machine's files.
    #[must_use]
    pub fn new() -> Self {
        Self::with_paths(LinuxPaths::default())
    }

    /// Reads MSRs from `root/N/msr`: for tests, with files laid out like
    /// the msr driver's devices (the value of MSR `m` in bytes `m..m + 8`).
    #[must_use]
    pub fn with_msr_root(root: impl Into<PathBuf>) -> Self {
        Self::with_paths(LinuxPaths {
            msr_root: root.into(),
            ..LinuxPaths::default()
        })
    }

    /// Reads the files at `paths`.
    #[must_use]
    pub fn with_paths(paths: LinuxPaths) -> Self {
        Self {
            paths,
            notes: BTreeSet::new(),
            original: None,
            msrs_read: false,
            cpuinfo: None,
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

    fn module_loaded(&self, name: &str) -> bool {
        let dir = self.paths.sys_module.join(name);
        // A module being loaded or unloaded has initstate "coming" or
        // "going"; a built-in one has no initstate.
        dir.is_dir() && read_trimmed(&dir.join("initstate")).is_none_or(|state| state == "live")
    }

    /// Notes on what else may hold VMX: `/dev/kvm` and loaded modules
    /// known to use VMX.
    fn owner_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let kvm = self.paths.dev_kvm.display();
        notes.push(
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.paths.dev_kvm)
            {
                Ok(_) => format!("{kvm} exists and opens: KVM can run virtual machines here"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    format!("{kvm} does not exist: KVM cannot run virtual machines here")
                }
                Err(e) => format!(
                    "{kvm} exists but does not open ({e}): join the group that owns it (usually \
                     `kvm`) to run virtual machines"
                ),
            },
        );
        let listed = std::fs::read_to_string(&self.paths.proc_modules).unwrap_or_default();
        let loaded: BTreeSet<&str> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        for (module, product) in VMX_MODULES {
            if loaded.contains(module) || self.module_loaded(module) {
                notes.push(format!(
                    "{module} ({product}) is loaded: it may hold VMX while its virtual machines run"
                ));
            }
        }
        notes
    }
}

impl Machine for LinuxMachine {
    fn source(&self) -> String {
        let msrs = if self.msrs_read {
            format!("MSRs through {}/N/msr", self.paths.msr_root.display())
        } else {
            "no MSR read".to_owned()
        };
        let cpuinfo = self.paths.cpuinfo.display();
        let cpuinfo = if self.cpuinfo.is_some() {
            cpuinfo.to_string()
        } else {
            format!("{cpuinfo} unreadable")
        };
        format!(
            "live on Linux: CPUID on each processor (thread pinned), {msrs}, {cpuinfo} and {}, \
             CR0/CR4 unknown in user mode",
            self.paths.sys_module.display()
        )
    }

    fn processors(&mut self) -> anyhow::Result<Vec<u32>> {
        self.cpuinfo = std::fs::read_to_string(&self.paths.cpuinfo)
            .ok()
            .map(|text| parse_cpuinfo(&text));
        if let Some(mut cpus) = read_trimmed(&self.paths.online).and_then(|t| parse_cpu_list(&t)) {
            if !cpus.is_empty() {
                // The processor the thread runs on first: one move fewer.
                if let Some(here) = sched_getcpu()
                    .ok()
                    .and_then(|cpu| u32::try_from(cpu).ok())
                    .and_then(|cpu| cpus.iter().position(|&c| c == cpu))
                {
                    cpus.rotate_left(here);
                }
                return Ok(cpus);
            }
        }
        self.notes.insert(format!(
            "{} could not be read: checked the processors this process may run on instead",
            self.paths.online.display()
        ));
        let set = self.affinity()?;
        Ok((0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .filter_map(|cpu| u32::try_from(cpu).ok())
            .collect())
    }

    fn observe(&mut self, cpu: u32, visit: &mut dyn FnMut(&mut dyn Observe)) -> anyhow::Result<()> {
        // Remember the affinity before the first pin; `finish` restores it.
        self.affinity()?;
        let mut only = CpuSet::new();
        only.set(cpu as usize)
            .with_context(|| format!("processor {cpu} is beyond the CPU set"))?;
        sched_setaffinity(Pid::from_raw(0), &only)
            .with_context(|| format!("cannot run on processor {cpu}"))?;
        let mut observer = LinuxCpu::new(&self.paths.msr_root, cpu);
        visit(&mut observer);
        if let Some(note) = observer.note {
            self.notes.insert(note);
        }
        self.msrs_read |= observer.answered;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(original) = self.original {
            sched_setaffinity(Pid::from_raw(0), &original).context("restoring the CPU affinity")?;
        }
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.notes.iter().cloned().collect();
        notes.extend(self.owner_notes());
        notes
    }

    /// `None` when `/proc/cpuinfo` could not be read; a processor it does
    /// not list has neither line.
    fn cpu_linux(&self, cpu: u32) -> Option<CpuLinux> {
        let all = self.cpuinfo.as_ref()?;
        Some(all.get(&cpu).cloned().unwrap_or_default())
    }

    fn host_linux(&self) -> Option<HostLinux> {
        let parameter = |module: &str, name: &str| {
            read_trimmed(
                &self
                    .paths
                    .sys_module
                    .join(module)
                    .join("parameters")
                    .join(name),
            )
        };
        Some(HostLinux {
            kvm_intel: Some(if self.module_loaded("kvm_intel") {
                KvmIntel::Loaded
            } else {
                KvmIntel::NotLoaded
            }),
            kvm_intel_nested: parameter("kvm_intel", "nested"),
            kvm_enable_virt_at_load: parameter("kvm", "enable_virt_at_load"),
        })
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
    /// Whether any MSR answered (a value or a fault).
    pub answered: bool,
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
            answered: false,
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
            Ok(8) => {
                self.answered = true;
                MsrRead::Value(u64::from_le_bytes(bytes))
            }
            Ok(n) => {
                let why = format!("{}: {n} bytes at {msr:#x}", path.display());
                self.unavailable(&why)
            }
            Err(e) => match classify(&e) {
                MsrRead::Faulted => {
                    self.answered = true;
                    MsrRead::Faulted
                }
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
