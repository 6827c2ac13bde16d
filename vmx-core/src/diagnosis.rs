//! The readiness diagnosis: from the raw CPUID, MSR and control-register
//! values of each processor to a verdict, its reason and a remedy.
//!
//! The diagnosis *drives* the reads through [`Observe`], in an order that
//! never asks for an MSR the SDM says does not exist. A live observer
//! executes them; a replay answers them from a dump; a recorder wraps a
//! live observer and keeps what it answered. A replay therefore diagnoses
//! exactly as the live run did.

use crate::capabilities::{Capabilities, VmxCapabilities};
use crate::conformance::Nonconformance;
use crate::cpu::{Cpu, CpuidResult};
use crate::cpuid::{BrandString, CpuIdentity, Hypervisor, brand_string};
use crate::error::Error;
use crate::feature_control::{FeatureControl, FeatureControlState};
use crate::fixed_bits::CR4_VMXE;
use crate::plan::{Decision, Readings, decide};
use crate::vmx_basic::VmxBasic;

/// The result of reading one MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsrRead {
    /// The value.
    Value(u64),
    /// RDMSR raised #GP.
    Faulted,
    /// Not read: no access (no privilege, no msr driver), or not captured.
    Unavailable,
}

impl MsrRead {
    /// The value, if there is one.
    #[must_use]
    pub const fn value(self) -> Option<u64> {
        match self {
            Self::Value(value) => Some(value),
            Self::Faulted | Self::Unavailable => None,
        }
    }
}

/// A source of one processor's raw values.
pub trait Observe {
    /// CPUID, or `None` when it cannot be answered (not captured).
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult>;
    /// RDMSR.
    fn read_msr(&mut self, msr: u32) -> MsrRead;
    /// CR0, where known (only ring 0 knows it).
    fn cr0(&mut self) -> Option<u64>;
    /// CR4, where known (only ring 0 knows it).
    fn cr4(&mut self) -> Option<u64>;
}

/// A borrowed observer observes: lets a caller keep its observer (e.g. a
/// `&mut dyn Observe` from a platform) while a [`Recorder`] wraps it.
impl<O: Observe + ?Sized> Observe for &mut O {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        (**self).cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        (**self).read_msr(msr)
    }

    fn cr0(&mut self) -> Option<u64> {
        (**self).cr0()
    }

    fn cr4(&mut self) -> Option<u64> {
        (**self).cr4()
    }
}

/// Observes a processor through its [`Cpu`]: for ring-0 front ends (the
/// driver's QUERY, the test kernel's dump).
#[derive(Debug)]
pub struct CpuObserver<'a, C: ?Sized>(pub &'a mut C);

impl<C: Cpu + ?Sized> Observe for CpuObserver<'_, C> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        Some(self.0.cpuid(leaf, subleaf))
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        self.0
            .read_msr(msr)
            .map_or(MsrRead::Faulted, MsrRead::Value)
    }

    fn cr0(&mut self) -> Option<u64> {
        Some(self.0.read_cr0())
    }

    fn cr4(&mut self) -> Option<u64> {
        Some(self.0.read_cr4())
    }
}

/// One answer an [`Observe`] gave, as a [`Recorder`] reports it: the raw
/// material of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation {
    /// A CPUID answer.
    Cpuid {
        /// EAX in.
        leaf: u32,
        /// ECX in.
        subleaf: u32,
        /// The registers out.
        result: CpuidResult,
    },
    /// An MSR that was read (`Value`) or faulted (`Faulted`). MSRs that
    /// could not be read at all are not recorded: "not read".
    Msr {
        /// The MSR's address.
        msr: u32,
        /// What reading it gave.
        read: MsrRead,
    },
    /// CR0.
    Cr0(u64),
    /// CR4.
    Cr4(u64),
}

/// An [`Observe`] that passes every question to another and reports each
/// answer to a sink: run [`diagnose`] through it to capture a dump that
/// replays to the same diagnosis.
#[derive(Debug)]
pub struct Recorder<O, F> {
    source: O,
    sink: F,
}

impl<O: Observe, F: FnMut(Observation)> Recorder<O, F> {
    /// Records what `source` answers into `sink`.
    pub const fn new(source: O, sink: F) -> Self {
        Self { source, sink }
    }

    /// The source back.
    pub fn into_inner(self) -> O {
        self.source
    }
}

impl<O: Observe, F: FnMut(Observation)> Observe for Recorder<O, F> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        let result = self.source.cpuid(leaf, subleaf)?;
        (self.sink)(Observation::Cpuid {
            leaf,
            subleaf,
            result,
        });
        Some(result)
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        let read = self.source.read_msr(msr);
        if read != MsrRead::Unavailable {
            (self.sink)(Observation::Msr { msr, read });
        }
        read
    }

    fn cr0(&mut self) -> Option<u64> {
        let value = self.source.cr0()?;
        (self.sink)(Observation::Cr0(value));
        Some(value)
    }

    fn cr4(&mut self) -> Option<u64> {
        let value = self.source.cr4()?;
        (self.sink)(Observation::Cr4(value));
        Some(value)
    }
}

/// The verdict on one processor, or on a machine: the first, in this order,
/// that applies. The order is that of the user-facing contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The vendor is not Intel.
    NotIntel,
    /// A hypervisor runs this processor and does not expose VMX.
    NestedUnavailable,
    /// Intel, no hypervisor, and the VMX bit is clear.
    NoVmx,
    /// IA32_FEATURE_CONTROL is locked without VMX outside SMX.
    DisabledByFirmware,
    /// CR4.VMXE is set: another hypervisor owns VMX.
    InUse,
    /// VMX is reported, but the processor's own report rules VMXON out:
    /// IA32_VMX_BASIC faults or is unusable, IA32_FEATURE_CONTROL or a
    /// fixed-bit MSR faults, the fixed bits cannot be satisfied, or a set
    /// CR0/CR4 bit is one FIXED1 forbids. A bug of the (nested) hypervisor
    /// or of the firmware.
    VmxUnusable,
    /// VMX is reported, but what decides VMXON could not be read.
    Undetermined,
    /// Everything allows VMXON.
    Ready,
}

impl Verdict {
    /// Every verdict, in order.
    pub const ALL: [Self; 8] = [
        Self::NotIntel,
        Self::NestedUnavailable,
        Self::NoVmx,
        Self::DisabledByFirmware,
        Self::InUse,
        Self::VmxUnusable,
        Self::Undetermined,
        Self::Ready,
    ];

    /// The contract name: `not-intel`, `nested-unavailable`, `no-vmx`,
    /// `disabled-by-firmware`, `in-use`, `vmx-unusable`, `undetermined`,
    /// `ready`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotIntel => "not-intel",
            Self::NestedUnavailable => "nested-unavailable",
            Self::NoVmx => "no-vmx",
            Self::DisabledByFirmware => "disabled-by-firmware",
            Self::InUse => "in-use",
            Self::VmxUnusable => "vmx-unusable",
            Self::Undetermined => "undetermined",
            Self::Ready => "ready",
        }
    }

    /// The verdict with a contract name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The machine's verdict: the first in order that any processor has;
    /// `None` for no processors.
    pub fn overall(verdicts: impl IntoIterator<Item = Self>) -> Option<Self> {
        verdicts.into_iter().min()
    }
}

impl core::fmt::Display for Verdict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What IA32_FEATURE_CONTROL looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureControlReading {
    /// Read.
    Read(FeatureControl),
    /// RDMSR raised #GP.
    Faulted,
    /// Not readable here (no privilege, no msr driver, not captured).
    Unavailable,
    /// Not asked for: the processor does not report VMX.
    NotRead,
}

impl FeatureControlReading {
    /// A short name for display and JSON: the [`FeatureControlState`] name
    /// when read (`enabled`, `disabled-by-firmware`, `vmx-only-inside-smx`,
    /// `unlocked`), else `faulted`, `unavailable` or `not-read`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Read(fc) => fc.state().name(),
            Self::Faulted => "faulted",
            Self::Unavailable => "unavailable",
            Self::NotRead => "not-read",
        }
    }
}

/// Everything the diagnosis learned about one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessorReport {
    /// CPUID's answers; `None` when not even leaf 0 was available.
    pub identity: Option<CpuIdentity>,
    /// The brand string.
    pub brand: Option<BrandString>,
    /// IA32_FEATURE_CONTROL.
    pub feature_control: FeatureControlReading,
    /// The VMX capability MSRs, when VMX is reported and IA32_VMX_BASIC
    /// could be read.
    pub capabilities: Option<VmxCapabilities>,
    /// CR0, where known.
    pub cr0: Option<u64>,
    /// CR4, where known.
    pub cr4: Option<u64>,
    /// What [`plan::decide`](crate::plan::decide) made of the values: the
    /// same decision entering makes.
    pub decision: Decision,
    /// The verdict.
    pub verdict: Verdict,
}

/// Diagnoses the processor behind `source`, reading in this order: CPUID
/// 0, 1, 0x4000_0000 (hypervisor bit set), 0x8000_0000, 0x8000_0001 (AMD
/// and Hygon), 0x8000_0008, the brand string; then, on an Intel processor
/// that reports VMX, IA32_FEATURE_CONTROL, IA32_VMX_BASIC and the
/// capability MSRs that exist; then CR0 and CR4.
///
/// ```
/// use vmx_core::{diagnose, CpuidResult, MsrRead, Observe, Verdict};
///
/// /// A processor seen from user mode inside a KVM guest: CPUID only.
/// struct Guest;
/// impl Observe for Guest {
///     fn cpuid(&mut self, leaf: u32, _: u32) -> Option<CpuidResult> {
///         Some(match leaf {
///             0 => CpuidResult { eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69 },
///             1 => CpuidResult { ecx: 1 << 31, ..Default::default() }, // hypervisor, no VMX
///             0x4000_0000 => CpuidResult { eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d },
///             _ => return None,
///         })
///     }
///     fn read_msr(&mut self, _: u32) -> MsrRead { MsrRead::Unavailable }
///     fn cr0(&mut self) -> Option<u64> { None }
///     fn cr4(&mut self) -> Option<u64> { None }
/// }
///
/// let report = diagnose(&mut Guest);
/// assert_eq!(report.verdict, Verdict::NestedUnavailable);
/// assert!(report.remedy().contains("nested=1"));
/// ```
pub fn diagnose<O: Observe + ?Sized>(source: &mut O) -> ProcessorReport {
    let readings = Readings::gather(source);
    let identity = readings.identity;
    let brand = identity.and_then(|_| brand_string(|leaf, subleaf| source.cpuid(leaf, subleaf)));
    let vmx = identity.is_some_and(|i| i.reports_vmx());
    let (feature_control, capabilities) = if vmx {
        let feature_control = match readings.feature_control {
            MsrRead::Value(raw) => FeatureControlReading::Read(FeatureControl::from_raw(raw)),
            MsrRead::Faulted => FeatureControlReading::Faulted,
            MsrRead::Unavailable => FeatureControlReading::Unavailable,
        };
        // The MSRs the decision read are answered from its readings, never
        // asked for twice.
        let capabilities = readings.basic.value().map(|basic| {
            VmxCapabilities::read(VmxBasic::from_raw(basic), |msr| {
                readings
                    .msr(msr)
                    .unwrap_or_else(|| source.read_msr(msr))
                    .value()
            })
        });
        (feature_control, capabilities)
    } else {
        (FeatureControlReading::NotRead, None)
    };
    let decision = decide(&readings);
    let verdict = Verdict::of(&decision, identity);
    ProcessorReport {
        identity,
        brand,
        feature_control,
        capabilities,
        cr0: readings.cr0,
        cr4: readings.cr4,
        decision,
        verdict,
    }
}

impl Verdict {
    /// The verdict for a [`Decision`]: a refusal's verdict follows from its
    /// error, so the diagnosis and entering cannot disagree.
    #[must_use]
    pub fn of(decision: &Decision, identity: Option<CpuIdentity>) -> Self {
        match decision {
            Decision::Enter(_) | Decision::AllowedUnlessControlRegisters => Self::Ready,
            Decision::Unknown(_) => Self::Undetermined,
            Decision::Refuse(error) => match error {
                Error::NotIntel { .. } => Self::NotIntel,
                Error::VmxNotSupported { hypervisor } => {
                    if hypervisor.is_some()
                        || identity
                            .and_then(|i| i.features)
                            .is_some_and(|f| f.hypervisor_present())
                    {
                        Self::NestedUnavailable
                    } else {
                        Self::NoVmx
                    }
                }
                Error::DisabledByFirmware { .. } | Error::VmxOnlyInsideSmx { .. } => {
                    Self::DisabledByFirmware
                }
                Error::InUse { .. } => Self::InUse,
                _ => Self::VmxUnusable,
            },
        }
    }
}

/// A capability MSR that breaks the SDM's rules (see
/// [`conformance`](crate::conformance)), with who reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapabilityNote {
    /// The rule broken.
    pub nonconformance: Nonconformance,
    /// The hypervisor whose virtual processor reports it, if any.
    pub hypervisor: Option<Hypervisor>,
}

impl core::fmt::Display for CapabilityNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.nonconformance)?;
        match self.hypervisor {
            Some(h) => write!(f, " (reported by {h}: a bug of its nested VMX)"),
            None => f.write_str(" (a bug of the processor or its firmware)"),
        }
    }
}

impl ProcessorReport {
    /// The capability MSRs' breaks of the SDM's rules, as notes: VMXON does
    /// not depend on them, so they never decide the verdict.
    pub fn capability_notes(&self) -> impl Iterator<Item = CapabilityNote> + '_ {
        let hypervisor = self.hypervisor();
        self.capabilities
            .iter()
            .flat_map(VmxCapabilities::nonconformances)
            .map(move |nonconformance| CapabilityNote {
                nonconformance,
                hypervisor,
            })
    }

    /// The capabilities by name (empty without VMX).
    #[must_use]
    pub fn capability_names(&self) -> Capabilities {
        self.capabilities
            .map_or(Capabilities::empty(), |c| c.names())
    }

    /// CR4.VMXE (bit 13), where CR4 is known: set means another hypervisor
    /// owns VMX on this processor.
    #[must_use]
    pub fn cr4_vmxe(&self) -> Option<bool> {
        self.cr4.map(|cr4| cr4 & CR4_VMXE != 0)
    }

    /// The hypervisor, if any.
    #[must_use]
    pub fn hypervisor(&self) -> Option<Hypervisor> {
        self.identity.and_then(|i| i.hypervisor)
    }

    /// Why the verdict is what it is, as a sentence with the values that
    /// decided it.
    #[must_use]
    pub fn reason(&self) -> Reason<'_> {
        Reason(self)
    }

    /// What to do about it, in one line.
    #[must_use]
    pub fn remedy(&self) -> &'static str {
        match self.verdict {
            Verdict::NotIntel => {
                "this is an AMD-V processor: use AMD-V (SVM), which this project does not drive, \
                 or run on a processor with VT-x (Intel, Centaur, Zhaoxin)"
            }
            Verdict::NestedUnavailable => self
                .hypervisor()
                .map_or("ask the hypervisor to expose VT-x to this guest", |h| {
                    h.nested_remedy()
                }),
            Verdict::NoVmx => {
                "this processor does not report VMX: check that VT-x is offered by the model \
                 (ark.intel.com) and enabled in firmware setup, then power-cycle"
            }
            Verdict::DisabledByFirmware => {
                if matches!(self.feature_control, FeatureControlReading::Read(fc) if fc.state() == FeatureControlState::VmxOnlyInsideSmx)
                {
                    "firmware enabled VT-x only for TXT measured launches: enable \"Intel \
                     Virtualization Technology\" itself (not only \"with TXT\") in firmware \
                     setup, then power the machine off and on"
                } else {
                    "enable \"Intel Virtualization Technology\" (VT-x) in firmware setup, then \
                     power the machine off and on (a warm reboot keeps the MSR locked)"
                }
            }
            Verdict::InUse => {
                "another hypervisor owns VMX on this processor: stop it (KVM: rmmod kvm_intel; \
                 Windows: turn off Hyper-V, VBS/memory integrity and WSL2), then try again"
            }
            Verdict::VmxUnusable => {
                if self.hypervisor().is_some() {
                    "this is a bug of the hypervisor that runs this machine: its VMX capability \
                     MSRs break the SDM's rules; update it, or report the values above to its \
                     vendor (a different CPU model setting may avoid it)"
                } else {
                    "the processor or its firmware reports VMX capabilities that break the SDM's \
                     rules: update the firmware (BIOS/UEFI) and its microcode, and report the \
                     values above to the vendor"
                }
            }
            Verdict::Undetermined => {
                if self.identity.is_none() {
                    "the dump has no CPUID leaf 0: capture it again with `vmx-check dump`"
                } else if self.identity.is_some_and(|i| i.features.is_none()) {
                    "CPUID leaf 1 is missing: capture the dump again with `vmx-check dump`"
                } else {
                    "run with the privilege to read MSRs: on Linux as root with the msr module \
                     (`sudo modprobe msr`), on Windows with the driver loaded"
                }
            }
            Verdict::Ready => {
                if matches!(self.feature_control, FeatureControlReading::Read(fc) if fc.state() == FeatureControlState::Unlocked)
                {
                    "nothing to do: IA32_FEATURE_CONTROL is unlocked and will be locked with VMX \
                     enabled on first use"
                } else {
                    "nothing to do"
                }
            }
        }
    }
}

/// The reason for a verdict; see [`ProcessorReport::reason`].
#[derive(Debug, Clone, Copy)]
pub struct Reason<'a>(&'a ProcessorReport);

impl core::fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::cpuid::signature_text;
        let report = self.0;
        let Some(identity) = report.identity else {
            return f.write_str("CPUID leaf 0 is not available");
        };
        match report.verdict {
            Verdict::NotIntel => {
                write!(
                    f,
                    "the vendor is {}, an AMD-V processor: CPUID.1:ECX bit 5 is not VMX there",
                    signature_text(&identity.vendor.signature())
                )?;
                if identity.svm {
                    f.write_str("; the processor offers AMD-V (SVM) instead")?;
                }
                Ok(())
            }
            Verdict::NestedUnavailable => match identity.hypervisor {
                Some(h) => write!(
                    f,
                    "this is a guest of {} (signature \"{}\"), which does not expose VMX: CPUID.1:ECX.VMX[bit 5] = 0",
                    h.name(),
                    signature_text(&h.signature())
                ),
                None => f.write_str("the hypervisor bit is set and CPUID.1:ECX.VMX[bit 5] = 0"),
            },
            Verdict::NoVmx => {
                f.write_str("CPUID.1:ECX.VMX[bit 5] = 0 and no hypervisor is present")
            }
            Verdict::DisabledByFirmware => match report.feature_control {
                FeatureControlReading::Read(fc)
                    if fc.state() == FeatureControlState::VmxOnlyInsideSmx =>
                {
                    write!(
                        f,
                        "IA32_FEATURE_CONTROL = {:#x}: locked with VMX enabled only inside SMX \
                         operation (bit 1, a TXT measured launch); VMX outside SMX (bit 2) is \
                         clear, so VMXON raises #GP for an ordinary OS or driver",
                        fc.raw()
                    )
                }
                FeatureControlReading::Read(fc) => write!(
                    f,
                    "IA32_FEATURE_CONTROL = {:#x}: locked with VMX outside SMX (bit 2) clear",
                    fc.raw()
                ),
                _ => f.write_str("IA32_FEATURE_CONTROL disables VMX"),
            },
            Verdict::InUse => write!(
                f,
                "CR4 = {:#x}: CR4.VMXE (bit 13) is already set",
                report.cr4.unwrap_or(0)
            ),
            Verdict::VmxUnusable => match report.decision {
                Decision::Refuse(error) => write!(
                    f,
                    "VMX is reported, but the processor's own report rules VMXON out: {error}"
                ),
                _ => f.write_str("VMX is reported, but the processor's own report rules VMXON out"),
            },
            Verdict::Undetermined => match report.decision {
                _ if identity.features.is_none() => f.write_str("CPUID leaf 1 is not available"),
                Decision::Unknown(crate::plan::Missing::Msr(0x3a)) => {
                    f.write_str("VMX is reported, but IA32_FEATURE_CONTROL could not be read here")
                }
                Decision::Unknown(missing) => {
                    write!(f, "VMX is reported, but {missing} could not be read here")
                }
                _ => f.write_str("VMX is reported, but not everything VMXON depends on is known"),
            },
            Verdict::Ready => match report.feature_control {
                FeatureControlReading::Read(fc) => write!(
                    f,
                    "VMX is reported and IA32_FEATURE_CONTROL = {:#x} ({})",
                    fc.raw(),
                    fc.state().name()
                ),
                _ => f.write_str("VMX is reported"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tests::skylake_x;

    /// Bochs corei7_skylake_x as GRUB leaves it, with CR4 given.
    struct Skylake {
        cr4: u64,
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
            skylake_x(msr).map_or(MsrRead::Faulted, MsrRead::Value)
        }

        fn cr0(&mut self) -> Option<u64> {
            Some(0xe000_0011)
        }

        fn cr4(&mut self) -> Option<u64> {
            Some(self.cr4)
        }
    }

    #[test]
    fn a_borrowed_observer_can_be_recorded_and_kept() {
        let mut live = Skylake { cr4: 0x20 };
        let mut seen = 0;
        let report = diagnose(&mut Recorder::new(&mut live, |_| seen += 1));
        assert_eq!(report.verdict, Verdict::Ready);
        assert!(seen > 0);
        // The observer is still the caller's.
        assert_eq!(diagnose(&mut live), report);
    }

    #[test]
    fn cr4_vmxe_is_bit_13_where_cr4_is_known() {
        let report = diagnose(&mut Skylake { cr4: 0x20 });
        assert_eq!(report.cr4_vmxe(), Some(false));
        let report = diagnose(&mut Skylake { cr4: 0x2020 });
        assert_eq!(report.cr4_vmxe(), Some(true));
        assert_eq!(report.verdict, Verdict::InUse);
        let unknown = ProcessorReport {
            cr4: None,
            ..report
        };
        assert_eq!(unknown.cr4_vmxe(), None);
    }

    #[test]
    fn feature_control_reading_names() {
        let read = FeatureControlReading::Read(FeatureControl::from_raw(0x1));
        assert_eq!(read.name(), "disabled-by-firmware");
        assert_eq!(FeatureControlReading::Faulted.name(), "faulted");
        assert_eq!(FeatureControlReading::Unavailable.name(), "unavailable");
        assert_eq!(FeatureControlReading::NotRead.name(), "not-read");
    }
}
