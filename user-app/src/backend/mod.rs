//! Live backends: where this machine's raw values come from. Each backend
//! answers vmx-core's [`Observe`] for one logical processor at a time; the
//! diagnosis (and so every decision about which MSR may be read) stays
//! vmx-core's.
//!
//! - Linux (`linux`): CPUID on each processor with the thread pinned to
//!   it; MSRs through `/dev/cpu/N/msr`; CR0/CR4 unknown (ring 3).
//! - Windows (`windows`): everything through the driver once it is loaded;
//!   without it, CPUID on each processor with the thread pinned to it
//!   ([`processor_groups`] numbers them across processor groups).

#[cfg(target_os = "linux")]
pub mod linux;
pub mod processor_groups;
#[cfg(target_os = "windows")]
pub mod windows;

use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observe};

use crate::dump::{CpuLinux, HostLinux};

/// A live source of raw values for each logical processor.
///
/// A new backend (the Windows driver path) implements this and nothing
/// else: the rest of the checker is shared.
pub trait Machine {
    /// How the values were obtained (what was actually read), as free text
    /// for the report and a dump's `"source"`: asked after the processors
    /// were observed.
    fn source(&self) -> String;

    /// The logical processors to observe, by number: every online one, in
    /// the order cheapest to visit (the report sorts them).
    ///
    /// # Errors
    /// The processors cannot be enumerated.
    fn processors(&mut self) -> anyhow::Result<Vec<u32>>;

    /// Runs `visit` with an observer of processor `cpu`.
    ///
    /// # Errors
    /// The backend cannot reach that processor (e.g. pinning failed).
    fn observe(&mut self, cpu: u32, visit: &mut dyn FnMut(&mut dyn Observe)) -> anyhow::Result<()>;

    /// Called once after the last [`Machine::observe`]: undo what
    /// observing changed (Linux: the thread's CPU affinity).
    ///
    /// # Errors
    /// It could not be undone.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// What this backend could not do, each said once, with what to do
    /// about it ("run as root with `modprobe msr`").
    fn notes(&self) -> Vec<String>;

    /// What the operating system says about processor `cpu` (Linux:
    /// `/proc/cpuinfo`), for the dump.
    fn cpu_linux(&self, _cpu: u32) -> Option<CpuLinux> {
        None
    }

    /// What the operating system says about the machine (Linux: KVM's
    /// module and parameters), for the dump.
    fn host_linux(&self) -> Option<HostLinux> {
        None
    }
}

/// The backend for the machine this runs on.
///
/// # Errors
/// No backend exists for this operating system.
pub fn this_machine() -> anyhow::Result<Box<dyn Machine>> {
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(linux::LinuxMachine::new()))
    }
    #[cfg(target_os = "windows")]
    {
        Ok(Box::new(windows::WindowsMachine::new()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "windows")))]
    {
        anyhow::bail!("no live backend for this operating system: use --replay FILE with a dump")
    }
}

/// Observes the processor the calling thread runs on through CPUID alone:
/// MSRs are unavailable and CR0/CR4 unknown. The caller pins the thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuidOnly;

impl Observe for CpuidOnly {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        Some(vmx_arch::cpuid(leaf, subleaf))
    }

    fn read_msr(&mut self, _msr: u32) -> MsrRead {
        MsrRead::Unavailable
    }

    fn cr0(&mut self) -> Option<u64> {
        None
    }

    fn cr4(&mut self) -> Option<u64> {
        None
    }
}
