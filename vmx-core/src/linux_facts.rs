//! What a Linux kernel already knows about VMX, read without root, and what
//! it decides when the MSRs could not be read.
//!
//! The facts are texts the kernel prints: the `flags` and `vmx flags` lines
//! of `/proc/cpuinfo` for each processor, whether `kvm_intel` is loaded, and
//! KVM's `enable_virt_at_load` parameter. The kernel learns them at ring 0:
//!
//! - `arch/x86/kernel/cpu/feat_ctl.c` (Linux 5.6 and later) reads
//!   IA32_FEATURE_CONTROL at boot, locks it with VMX enabled when the
//!   firmware left it unlocked, and clears the `vmx` flag when it is locked
//!   with VMX off ("VMX (outside TXT) disabled by BIOS"). Only when VMX is
//!   enabled does it fill the capabilities that `/proc/cpuinfo` prints as
//!   `vmx flags`, in the names of `arch/x86/include/asm/vmxfeatures.h`: the
//!   vocabulary of [`Capabilities`].
//! - KVM with `enable_virt_at_load=Y` (the default since Linux 6.12) runs
//!   VMXON on every processor when `kvm_intel` loads, so CR4.VMXE is set and
//!   VMX is taken ("Enabling and Entering VMX Operation": VMXON in VMX root
//!   operation fails); with `N` (and in older kernels) KVM holds VMX only
//!   while a VM runs.
//!
//! [`refine`] turns a processor's [`ProcessorReport`] and these facts into
//! the verdict; without facts it is the report's own. It is pure: the front
//! end reads the files and records the texts in its dump, so a replay
//! decides exactly as the live run did.

use core::fmt;

use bitflags::bitflags;

use crate::capabilities::Capabilities;
use crate::diagnosis::{FeatureControlReading, ProcessorReport, Verdict};

/// Whether the `kvm_intel` module is loaded (or built in and initialised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvmIntel {
    /// Loaded.
    Loaded,
    /// Not loaded.
    NotLoaded,
}

impl KvmIntel {
    /// The dump's spelling: `loaded` or `not-loaded`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::NotLoaded => "not-loaded",
        }
    }

    /// The state with a dump spelling.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Loaded, Self::NotLoaded]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Loaded modules other than `kvm_intel` that are known to use VMX, by
/// module name, with the product they belong to: possible owners of VMX.
pub const VMX_MODULES: [(&str, &str); 2] = [
    ("vboxdrv", "VirtualBox"),
    ("vmmon", "VMware Workstation/Player"),
];

/// The Linux facts about one processor, as the kernel printed them. A
/// `None` is a line or file that does not exist (or was not captured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LinuxFacts<'a> {
    /// The processor's `flags` line of `/proc/cpuinfo` (the text after the
    /// colon).
    pub cpuinfo_flags: Option<&'a str>,
    /// The processor's `vmx flags` line of `/proc/cpuinfo`.
    pub cpuinfo_vmx_flags: Option<&'a str>,
    /// Whether `kvm_intel` is loaded.
    pub kvm_intel: Option<KvmIntel>,
    /// `/sys/module/kvm/parameters/enable_virt_at_load`, trimmed (`Y` or
    /// `N`; absent before Linux 6.12).
    pub kvm_enable_virt_at_load: Option<&'a str>,
}

impl LinuxFacts<'_> {
    fn flag(line: Option<&str>, name: &str) -> Option<bool> {
        line.map(|line| line.split_ascii_whitespace().any(|f| f == name))
    }

    /// Whether `flags` lists `vmx` (`None` without a flags line).
    #[must_use]
    pub fn cpuinfo_vmx(&self) -> Option<bool> {
        Self::flag(self.cpuinfo_flags, "vmx")
    }

    /// The capabilities the `vmx flags` line names (names vmx-core does not
    /// know are left out).
    #[must_use]
    pub fn vmx_flags(&self) -> Capabilities {
        self.cpuinfo_vmx_flags
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
            .filter_map(Capabilities::from_linux_name)
            .fold(Capabilities::empty(), |all, one| all | one)
    }

    /// Whether KVM turned VMX on when it loaded: `kvm_intel` loaded with
    /// `enable_virt_at_load` `Y` (sysfs prints booleans as `Y`/`N`).
    #[must_use]
    pub fn kvm_enabled_at_load(&self) -> bool {
        self.kvm_intel == Some(KvmIntel::Loaded)
            && self
                .kvm_enable_virt_at_load
                .is_some_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
    }
}

/// Which Linux fact decided a verdict that the registers alone did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inference {
    /// None: the verdict is the report's own.
    Observed,
    /// `in-use`: `kvm_intel` loaded with `enable_virt_at_load=Y` and CR4
    /// unknown.
    KvmEnabledAtLoad,
    /// `disabled-by-firmware`: MSRs not read, CPUID reports VMX, and the
    /// kernel's `flags` line has no `vmx`.
    KernelHidesVmx,
    /// `ready`: MSRs not read, the kernel lists `vmx` and its `vmx flags`,
    /// and `kvm_intel` is not loaded.
    KernelEnabledVmx,
}

bitflags! {
    /// What the Linux facts add to a verdict, as notes
    /// ([`LinuxNotes::texts`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct LinuxNotes: u8 {
        /// `kvm_intel` is loaded without `enable_virt_at_load=Y`.
        const KVM_HOLDS_VMX_WHILE_A_VM_RUNS = 1 << 0;
        /// `ready` inferred: CR4.VMXE was not read.
        const CR4_NOT_READ = 1 << 1;
        /// `flags` lists `vmx` without a `vmx flags` line: a kernel that does
        /// not check IA32_FEATURE_CONTROL.
        const KERNEL_DID_NOT_CHECK = 1 << 2;
        /// `kvm_intel` is loaded and the MSRs were not read: its loading says
        /// VMX was enabled, but a running VM may hold it.
        const KVM_LOADED_MSRS_NOT_READ = 1 << 3;
    }
}

impl LinuxNotes {
    /// The notes as sentences, in a fixed order.
    pub fn texts(self) -> impl Iterator<Item = &'static str> {
        [
            (
                Self::KVM_HOLDS_VMX_WHILE_A_VM_RUNS,
                "kvm_intel is loaded without enable_virt_at_load=Y: KVM turns VMX on only while \
                 a VM runs, so VMXON fails while one does (stop the VMs first)",
            ),
            (
                Self::CR4_NOT_READ,
                "CR4.VMXE cannot be read from user mode: a hypervisor outside KVM that holds VMX \
                 would not show here",
            ),
            (
                Self::KERNEL_DID_NOT_CHECK,
                "/proc/cpuinfo lists vmx without a `vmx flags` line: kernels before 5.6 show the \
                 CPUID bit without checking IA32_FEATURE_CONTROL, so it says nothing about the \
                 firmware setting",
            ),
            (
                Self::KVM_LOADED_MSRS_NOT_READ,
                "kvm_intel is loaded, which it refuses when the firmware disables VMX; read the \
                 MSRs as root (`sudo modprobe msr`) for a definite verdict",
            ),
        ]
        .into_iter()
        .filter(move |(note, _)| self.contains(*note))
        .map(|(_, text)| text)
    }
}

/// A processor's verdict with the Linux facts taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refined {
    /// The verdict.
    pub verdict: Verdict,
    /// What decided it, beyond the registers.
    pub inference: Inference,
    /// The capabilities by name: from the MSRs when they were read, else
    /// from the `vmx flags` line.
    pub capabilities: Capabilities,
    /// What the facts add.
    pub notes: LinuxNotes,
}

/// The verdict on one processor from its report and the Linux facts. The
/// verdicts keep their order: a fact decides only where the registers left
/// a later verdict (a processor without VMX stays so), and without facts
/// the verdict is the report's.
#[must_use]
pub fn refine(report: &ProcessorReport, facts: &LinuxFacts<'_>) -> Refined {
    let capabilities = if report.capabilities.is_some() {
        report.capability_names()
    } else {
        facts.vmx_flags()
    };
    let mut refined = Refined {
        verdict: report.verdict,
        inference: Inference::Observed,
        capabilities,
        notes: LinuxNotes::empty(),
    };
    let msrs_not_read = matches!(report.feature_control, FeatureControlReading::Unavailable);
    let cpuid_vmx = report.identity.is_some_and(|i| i.vmx());
    let loaded = facts.kvm_intel == Some(KvmIntel::Loaded);

    // "MSRs not read, CPUID reports VMX, cpuinfo flags without vmx":
    // feat_ctl.c cleared the flag because the MSR locks VMX off.
    if msrs_not_read
        && cpuid_vmx
        && report.verdict > Verdict::DisabledByFirmware
        && facts.cpuinfo_vmx() == Some(false)
    {
        refined.verdict = Verdict::DisabledByFirmware;
        refined.inference = Inference::KernelHidesVmx;
        return refined;
    }
    if report.cr4.is_none() && report.verdict > Verdict::InUse && facts.kvm_enabled_at_load() {
        refined.verdict = Verdict::InUse;
        refined.inference = Inference::KvmEnabledAtLoad;
        return refined;
    }
    if loaded {
        // Only what the note says: with enable_virt_at_load=Y, KVM holds
        // VMX from its loading on (decided above when CR4 is unknown).
        if !facts.kvm_enabled_at_load() {
            refined.notes |= LinuxNotes::KVM_HOLDS_VMX_WHILE_A_VM_RUNS;
        }
        if msrs_not_read && report.verdict == Verdict::Undetermined {
            refined.notes |= LinuxNotes::KVM_LOADED_MSRS_NOT_READ;
        }
    }
    if msrs_not_read
        && cpuid_vmx
        && report.verdict == Verdict::Undetermined
        && facts.cpuinfo_vmx() == Some(true)
    {
        if facts.cpuinfo_vmx_flags.is_none() {
            refined.notes |= LinuxNotes::KERNEL_DID_NOT_CHECK;
        } else if facts.kvm_intel == Some(KvmIntel::NotLoaded) {
            refined.verdict = Verdict::Ready;
            refined.inference = Inference::KernelEnabledVmx;
            if report.cr4.is_none() {
                refined.notes |= LinuxNotes::CR4_NOT_READ;
            }
        }
    }
    refined
}

impl Refined {
    /// Why the verdict is what it is: the report's reason, or the Linux
    /// facts that decided it.
    #[must_use]
    pub fn reason<'a>(&'a self, report: &'a ProcessorReport) -> RefinedReason<'a> {
        RefinedReason {
            refined: self,
            report,
        }
    }

    /// What to do about it.
    #[must_use]
    pub fn remedy(&self, report: &ProcessorReport) -> &'static str {
        match self.inference {
            Inference::KvmEnabledAtLoad => {
                "KVM holds VMX: boot with kvm.enable_virt_at_load=0 (what VirtualBox users do) so \
                 that KVM takes VMX only while a VM runs, or stop the VMs and `sudo rmmod \
                 kvm_intel`"
            }
            Inference::Observed | Inference::KernelHidesVmx | Inference::KernelEnabledVmx => {
                ProcessorReport {
                    verdict: self.verdict,
                    ..*report
                }
                .remedy()
            }
        }
    }
}

/// See [`Refined::reason`].
#[derive(Debug, Clone, Copy)]
pub struct RefinedReason<'a> {
    refined: &'a Refined,
    report: &'a ProcessorReport,
}

impl fmt::Display for RefinedReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.refined.inference {
            Inference::Observed => self.report.reason().fmt(f),
            Inference::KvmEnabledAtLoad => f.write_str(
                "kvm_intel is loaded with enable_virt_at_load=Y: KVM ran VMXON on every \
                 processor when it loaded (CR4.VMXE cannot be read from user mode to confirm it)",
            ),
            Inference::KernelHidesVmx => f.write_str(
                "inferred: CPUID.1:ECX.VMX[bit 5] = 1 but /proc/cpuinfo's flags have no vmx; \
                 Linux (5.6 and later) hides the flag when IA32_FEATURE_CONTROL locks VMX off \
                 (the MSR itself was not read)",
            ),
            Inference::KernelEnabledVmx => f.write_str(
                "VMX is reported and /proc/cpuinfo lists vmx with its vmx flags: Linux checked \
                 IA32_FEATURE_CONTROL at boot (locking it with VMX on if the firmware had not), \
                 and kvm_intel is not loaded",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuidResult;
    use crate::diagnosis::{MsrRead, Observe, diagnose};
    use std::string::ToString;

    /// Bochs corei7_skylake_x's CPUID (VMX set), MSRs as given.
    struct Skylake {
        msrs: fn(u32) -> MsrRead,
        cr4: Option<u64>,
    }

    impl Observe for Skylake {
        fn cpuid(&mut self, leaf: u32, _: u32) -> Option<CpuidResult> {
            let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
            match leaf {
                0 => Some(r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69)),
                1 => Some(r(0x50654, 0, 0x77fa_f3bf, 0xbfeb_fbff)),
                _ => None,
            }
        }
        fn read_msr(&mut self, msr: u32) -> MsrRead {
            (self.msrs)(msr)
        }
        fn cr0(&mut self) -> Option<u64> {
            None
        }
        fn cr4(&mut self) -> Option<u64> {
            self.cr4
        }
    }

    fn user_mode() -> ProcessorReport {
        diagnose(&mut Skylake {
            msrs: |_| MsrRead::Unavailable,
            cr4: None,
        })
    }

    fn root() -> ProcessorReport {
        diagnose(&mut Skylake {
            msrs: |msr| {
                crate::capabilities::tests::skylake_x(msr).map_or(MsrRead::Faulted, MsrRead::Value)
            },
            cr4: None,
        })
    }

    /// From a Linux 6.x guest with VT-x (`/proc/cpuinfo`), trimmed.
    const FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est";
    const VMX_FLAGS: &str = "vnmi preemption_timer invvpid ept_x_only ept_ad ept_1gb \
                             flexpriority tsc_offset vtpr mtf vapic ept vpid unrestricted_guest \
                             vapic_reg vid ple shadow_vmcs pml ept_mode_based_exec tsc_scaling \
                             bus_lock_detect";

    fn facts() -> LinuxFacts<'static> {
        LinuxFacts {
            cpuinfo_flags: Some(FLAGS),
            cpuinfo_vmx_flags: Some(VMX_FLAGS),
            kvm_intel: Some(KvmIntel::NotLoaded),
            kvm_enable_virt_at_load: None,
        }
    }

    #[test]
    fn without_facts_the_verdict_is_the_reports() {
        for report in [user_mode(), root()] {
            let refined = refine(&report, &LinuxFacts::default());
            assert_eq!(refined.verdict, report.verdict);
            assert_eq!(refined.inference, Inference::Observed);
            assert_eq!(refined.capabilities, report.capability_names());
            assert!(refined.notes.is_empty());
            assert_eq!(
                refined.reason(&report).to_string(),
                report.reason().to_string()
            );
            assert_eq!(refined.remedy(&report), report.remedy());
        }
    }

    #[test]
    fn kvm_enabled_at_load_is_in_use_when_cr4_is_unknown() {
        let facts = LinuxFacts {
            kvm_intel: Some(KvmIntel::Loaded),
            kvm_enable_virt_at_load: Some("Y"),
            ..facts()
        };
        for report in [user_mode(), root()] {
            let refined = refine(&report, &facts);
            assert_eq!(refined.verdict, Verdict::InUse);
            assert_eq!(refined.inference, Inference::KvmEnabledAtLoad);
            assert!(
                refined
                    .remedy(&report)
                    .contains("kvm.enable_virt_at_load=0")
            );
            assert!(refined.remedy(&report).contains("rmmod kvm_intel"));
            assert!(
                refined
                    .reason(&report)
                    .to_string()
                    .contains("enable_virt_at_load=Y")
            );
        }
        // CR4 known (ring 0): CR4.VMXE itself decides.
        let ring0 = diagnose(&mut Skylake {
            msrs: |msr| {
                crate::capabilities::tests::skylake_x(msr).map_or(MsrRead::Faulted, MsrRead::Value)
            },
            cr4: Some(0x20),
        });
        assert_eq!(refine(&ring0, &facts).verdict, Verdict::Ready);
        // And no note may then say enable_virt_at_load is not Y.
        let notes = refine(&ring0, &facts).notes;
        assert!(
            !notes.contains(LinuxNotes::KVM_HOLDS_VMX_WHILE_A_VM_RUNS),
            "{notes:?}"
        );
    }

    #[test]
    fn kvm_loaded_without_enable_at_load_decides_as_otherwise_with_a_note() {
        for virt in [Some("N"), None] {
            let facts = LinuxFacts {
                kvm_intel: Some(KvmIntel::Loaded),
                kvm_enable_virt_at_load: virt,
                ..facts()
            };
            let refined = refine(&root(), &facts);
            assert_eq!(refined.verdict, Verdict::Ready);
            assert!(
                refined
                    .notes
                    .contains(LinuxNotes::KVM_HOLDS_VMX_WHILE_A_VM_RUNS)
            );
            // Without MSRs, a loaded kvm_intel keeps the kernel's `ready` out.
            let refined = refine(&user_mode(), &facts);
            assert_eq!(refined.verdict, Verdict::Undetermined);
            assert!(refined.notes.contains(LinuxNotes::KVM_LOADED_MSRS_NOT_READ));
        }
    }

    #[test]
    fn cpuinfo_without_vmx_is_disabled_by_firmware_inferred() {
        let facts = LinuxFacts {
            cpuinfo_flags: Some("fpu vme de pse tsc msr smx est"),
            cpuinfo_vmx_flags: None,
            ..facts()
        };
        let report = user_mode();
        let refined = refine(&report, &facts);
        assert_eq!(refined.verdict, Verdict::DisabledByFirmware);
        assert_eq!(refined.inference, Inference::KernelHidesVmx);
        assert!(refined.reason(&report).to_string().starts_with("inferred"));
        assert!(refined.remedy(&report).contains("firmware setup"));
        // With the MSRs read, they decide.
        assert_eq!(refine(&root(), &facts).verdict, Verdict::Ready);
    }

    #[test]
    fn cpuinfo_with_vmx_and_kvm_not_loaded_is_ready_with_linux_capabilities() {
        let report = user_mode();
        let refined = refine(&report, &facts());
        assert_eq!(refined.verdict, Verdict::Ready);
        assert_eq!(refined.inference, Inference::KernelEnabledVmx);
        assert!(refined.notes.contains(LinuxNotes::CR4_NOT_READ));
        let names: std::vec::Vec<_> = refined.capabilities.linux_names().collect();
        assert!(names.contains(&"ept") && names.contains(&"mtf") && names.contains(&"pml"));
        // A name vmx-core does not know is left out.
        assert_eq!(names.len(), VMX_FLAGS.split_whitespace().count() - 1);
        assert_eq!(refined.remedy(&report), "nothing to do");
    }

    #[test]
    fn a_vmx_flag_without_vmx_flags_is_an_unchecking_kernel() {
        let facts = LinuxFacts {
            cpuinfo_vmx_flags: None,
            ..facts()
        };
        let refined = refine(&user_mode(), &facts);
        assert_eq!(refined.verdict, Verdict::Undetermined);
        assert!(refined.notes.contains(LinuxNotes::KERNEL_DID_NOT_CHECK));
        // kvm_intel's state unknown: no inference either.
        let facts = LinuxFacts {
            kvm_intel: None,
            ..self::facts()
        };
        assert_eq!(refine(&user_mode(), &facts).verdict, Verdict::Undetermined);
    }

    #[test]
    fn earlier_verdicts_stay() {
        // No VMX in CPUID: a hypervisor or the model, whatever Linux says.
        struct NoVmx;
        impl Observe for NoVmx {
            fn cpuid(&mut self, leaf: u32, _: u32) -> Option<CpuidResult> {
                let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
                match leaf {
                    0 => Some(r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69)),
                    1 => Some(r(0x50654, 0, 0, 0)),
                    _ => None,
                }
            }
            fn read_msr(&mut self, _: u32) -> MsrRead {
                MsrRead::Unavailable
            }
            fn cr0(&mut self) -> Option<u64> {
                None
            }
            fn cr4(&mut self) -> Option<u64> {
                None
            }
        }
        let report = diagnose(&mut NoVmx);
        let facts = LinuxFacts {
            cpuinfo_flags: Some("fpu"),
            kvm_intel: Some(KvmIntel::Loaded),
            kvm_enable_virt_at_load: Some("Y"),
            ..facts()
        };
        assert_eq!(refine(&report, &facts).verdict, Verdict::NoVmx);
    }

    #[test]
    fn names_round_trip() {
        for k in [KvmIntel::Loaded, KvmIntel::NotLoaded] {
            assert_eq!(KvmIntel::from_name(k.name()), Some(k));
        }
        assert_eq!(KvmIntel::from_name("yes"), None);
        assert_eq!(LinuxNotes::all().texts().count(), 4);
    }
}
