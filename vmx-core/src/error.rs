//! The one error type of vmx-core.

use crate::cpu::Fault;
use crate::cpuid::{Hypervisor, Vendor};
use crate::fixed_bits::ControlRegister;
use crate::instruction::VmInstructionError;

/// A privileged instruction, named in errors about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// RDMSR of the given MSR.
    Rdmsr(u32),
    /// WRMSR of the given MSR.
    Wrmsr(u32),
    /// VMXON.
    Vmxon,
    /// VMXOFF.
    Vmxoff,
    /// VMCLEAR.
    Vmclear,
    /// VMPTRLD.
    Vmptrld,
}

impl core::fmt::Display for Instruction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Rdmsr(msr) => write!(f, "RDMSR {msr:#x}"),
            Self::Wrmsr(msr) => write!(f, "WRMSR {msr:#x}"),
            Self::Vmxon => f.write_str("VMXON"),
            Self::Vmxoff => f.write_str("VMXOFF"),
            Self::Vmclear => f.write_str("VMCLEAR"),
            Self::Vmptrld => f.write_str("VMPTRLD"),
        }
    }
}

/// Why entering or leaving VMX operation did not happen. Every variant
/// carries the values that explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// CPUID leaf 0 names an AMD-V vendor (AMD, Hygon), whose CPUID.1:ECX
    /// bit 5 is not VMX. Every other vendor is decided by the VMX bit.
    #[error(
        "the processor is {vendor}, an AMD-V (SVM) processor: VT-x (VMX) is not implemented there"
    )]
    NotIntel {
        /// The vendor CPUID reports.
        vendor: Vendor,
    },
    /// CPUID.1:ECX.VMX (bit 5) is clear.
    #[error("CPUID.1:ECX.VMX[bit 5] is clear: this processor does not offer VMX{}", GuestOf(*hypervisor))]
    VmxNotSupported {
        /// The hypervisor this processor is a guest of, if any.
        hypervisor: Option<Hypervisor>,
    },
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled.
    #[error(
        "VT-x is disabled by firmware (IA32_FEATURE_CONTROL = {msr:#x}): enable it in firmware setup, then power-cycle"
    )]
    DisabledByFirmware {
        /// IA32_FEATURE_CONTROL as read.
        msr: u64,
    },
    /// IA32_FEATURE_CONTROL is locked with VMX allowed only inside SMX.
    #[error(
        "VT-x is allowed only inside SMX (TXT) operation (IA32_FEATURE_CONTROL = {msr:#x}): enable VT-x without TXT in firmware setup, then power-cycle"
    )]
    VmxOnlyInsideSmx {
        /// IA32_FEATURE_CONTROL as read.
        msr: u64,
    },
    /// Locking IA32_FEATURE_CONTROL did not leave VMX enabled.
    #[error("IA32_FEATURE_CONTROL wrote {written:#x} but reads back {read:#x}")]
    FeatureControlNotLocked {
        /// The value written.
        written: u64,
        /// The value read back.
        read: u64,
    },
    /// CR4.VMXE is already set: another hypervisor owns VMX on this
    /// processor (Linux KVM refuses with -EBUSY likewise).
    #[error(
        "CR4.VMXE is already set (CR4 = {cr4:#x}): another hypervisor is using VMX on this processor"
    )]
    InUse {
        /// CR4 as read.
        cr4: u64,
    },
    /// A privileged instruction raised an exception.
    #[error("{instruction} raised {fault}")]
    Faulted {
        /// The instruction.
        instruction: Instruction,
        /// The exception.
        fault: Fault,
    },
    /// IA32_VMX_BASIC asks for a region larger than a page.
    #[error("IA32_VMX_BASIC ({basic:#x}) asks for a {size}-byte VMXON region, more than 4096")]
    RegionTooLarge {
        /// The size from bits 44:32.
        size: u32,
        /// IA32_VMX_BASIC as read.
        basic: u64,
    },
    /// IA32_VMX_BASIC reports a region size of 0.
    #[error(
        "IA32_VMX_BASIC ({basic:#x}) reports a VMXON region size of 0 (bits 44:32), where the SDM promises a value greater than 0"
    )]
    RegionSizeZero {
        /// IA32_VMX_BASIC as read.
        basic: u64,
    },
    /// IA32_VMX_BASIC has bit 31 set, which the SDM says is always 0.
    #[error(
        "IA32_VMX_BASIC ({basic:#x}) has bit 31 set, which the SDM says is always 0: the VMCS revision identifier cannot be trusted"
    )]
    RevisionBit31Set {
        /// IA32_VMX_BASIC as read.
        basic: u64,
    },
    /// IA32_VMX_BASIC names a memory type other than write-back.
    #[error("IA32_VMX_BASIC ({basic:#x}) names memory type {memory_type}, not write-back (6)")]
    UnsupportedMemoryType {
        /// The type from bits 53:50.
        memory_type: u8,
        /// IA32_VMX_BASIC as read.
        basic: u64,
    },
    /// CPUID reports a physical-address width in which no 4 KiB-aligned
    /// region fits but the one at address 0 (VMXON's operand must be
    /// aligned and within the width).
    #[error(
        "CPUID.80000008H:EAX[7:0] reports a {width}-bit physical-address width: no 4 KiB-aligned VMXON region above address 0 fits in it"
    )]
    AddressWidthTooSmall {
        /// The width CPUID reports.
        width: u8,
    },
    /// The VMXON region is not 4 KiB aligned.
    #[error("the VMXON region at {physical_address:#x} is not 4 KiB aligned")]
    RegionMisaligned {
        /// Its physical address.
        physical_address: u64,
    },
    /// The VMXON region lies beyond the physical-address width.
    #[error(
        "the VMXON region at {physical_address:#x} is beyond the {width}-bit physical-address width"
    )]
    RegionBeyondAddressWidth {
        /// Its physical address.
        physical_address: u64,
        /// The width it must fit in.
        width: u8,
    },
    /// No value of the control register satisfies its fixed bits.
    #[error(
        "no {register} value satisfies IA32_VMX_{register}_FIXED0 = {fixed0:#x} and FIXED1 = {fixed1:#x}"
    )]
    FixedBitsUnsatisfiable {
        /// The register.
        register: ControlRegister,
        /// FIXED0 as read.
        fixed0: u64,
        /// FIXED1 as read.
        fixed1: u64,
    },
    /// A CR0 or CR4 bit that the running system set (or VMXE, which VMX
    /// operation needs) is one that IA32_VMX_CRn_FIXED1 forbids: vmx-core
    /// never clears a set bit to meet FIXED1 (clearing CR4.PAE or LA57 in
    /// IA-32e mode is a #GP; clearing PKE, OSXSAVE, SMEP or SMAP breaks or
    /// weakens the running OS).
    #[error(
        "{register}.{name} (bit {bit}) {state} {register} = {value:#x}, but IA32_VMX_{register}_FIXED1 = {fixed1:#x} requires it to be 0 in VMX operation; {consequence}",
        name = crate::fixed_bits::bit_name(*register, *bit),
        state = if *value >> *bit & 1 == 1 { "is set in" } else { "is needed by VMX operation and clear in" },
        consequence = if *value >> *bit & 1 == 1 { "vmx-core does not clear a bit the running system depends on" } else { "VMXON cannot run with these fixed bits" },
    )]
    FixedBitForbidden {
        /// The register.
        register: ControlRegister,
        /// The lowest such bit: one the running system set, or one VMX
        /// operation needs (CR4.VMXE) that is clear in `value`.
        bit: u8,
        /// The register's value as read (without the VMXE that entering
        /// adds).
        value: u64,
        /// IA32_VMX_CRn_FIXED1 as read.
        fixed1: u64,
    },
    /// Meeting the fixed bits would change a CR0 bit that the running
    /// system depends on (PE or PG).
    #[error(
        "meeting the VMX fixed bits would change CR0 from {cr0:#x} to {adjusted:#x}, turning protection or paging off"
    )]
    Cr0ChangeRefused {
        /// CR0 as read.
        cr0: u64,
        /// CR0 as the fixed bits would have it.
        adjusted: u64,
    },
    /// A VMCS region is not 4 KiB aligned (VMCLEAR and VMPTRLD would fail
    /// with VM-instruction error 2 or 9).
    #[error("the VMCS region at {physical_address:#x} is not 4 KiB aligned")]
    VmcsMisaligned {
        /// Its physical address.
        physical_address: u64,
    },
    /// A VMCS region lies beyond the physical-address width (VMCLEAR and
    /// VMPTRLD would fail with VM-instruction error 2 or 9).
    #[error(
        "the VMCS region at {physical_address:#x} is beyond the {width}-bit physical-address width"
    )]
    VmcsBeyondAddressWidth {
        /// Its physical address.
        physical_address: u64,
        /// The width it must fit in.
        width: u8,
    },
    /// A VMCS region would be the VMXON region (VMCLEAR and VMPTRLD would
    /// fail with VM-instruction error 3 or 10).
    #[error("the VMCS region at {physical_address:#x} is this processor's VMXON region")]
    VmcsIsVmxonRegion {
        /// Its physical address.
        physical_address: u64,
    },
    /// A VMX instruction set CF: VMfailInvalid.
    #[error("{instruction} failed with VMfailInvalid{}", FailInvalidCause(*instruction))]
    VmFailInvalid {
        /// The instruction.
        instruction: Instruction,
    },
    /// A VMX instruction set ZF: VMfailValid with an error number.
    #[error("{instruction} failed with VMfailValid, {error}")]
    VmFailValid {
        /// The instruction.
        instruction: Instruction,
        /// The VM-instruction error.
        error: VmInstructionError,
    },
    /// A value the decision needs could not be read (only from an observer
    /// that cannot answer everything; a [`Cpu`](crate::Cpu) always can).
    #[error("{missing} could not be read, so whether VMXON may run is not known")]
    NotKnown {
        /// What was missing.
        missing: crate::plan::Missing,
    },
    /// Entering on a processor that is already in VMX operation (by us).
    #[error("this processor is already in VMX operation")]
    AlreadyEntered,
    /// Leaving on a processor that is not in VMX operation (by us).
    #[error("this processor is not in VMX operation")]
    NotEntered,
    /// No page for a VMXON region could be allocated.
    #[error("no memory for a VMXON region")]
    OutOfMemory,
    /// The platform could not run code on the processor.
    #[error("the platform cannot run code on this processor")]
    ProcessorUnavailable,
    /// A control the hypervisor requires is one the processor does not
    /// allow (SDM Appendix A, "Algorithms for Determining VMX
    /// Capabilities").
    #[error(
        "the {control} need bit {bit} to be {}, which the processor does not allow",
        u8::from(*setting)
    )]
    ControlNotAllowed {
        /// The control field.
        control: crate::controls::Control,
        /// The bit.
        bit: u8,
        /// The setting required.
        setting: bool,
    },
    /// The VMCS description breaks VM-entry rules: nothing was written.
    #[error("the VMCS breaks {failing} VM-entry rule(s), the first: {rule}")]
    EntryRulesBroken {
        /// The first rule broken, in the SDM's order.
        rule: crate::entry_checks::Rule,
        /// How many rules are broken.
        failing: usize,
    },
    /// VMREAD or VMWRITE of a VMCS field failed.
    #[error("{} of {field} failed with {outcome}", if *write { "VMWRITE" } else { "VMREAD" })]
    VmcsFieldFailed {
        /// The field.
        field: crate::fields::Field,
        /// VMWRITE (true) or VMREAD.
        write: bool,
        /// VMfailInvalid or VMfailValid.
        outcome: crate::instruction::VmxOutcome,
    },
    /// VMREAD or VMWRITE raised an exception.
    #[error("{} of {field} raised {fault}", if *write { "VMWRITE" } else { "VMREAD" })]
    VmcsFieldFaulted {
        /// The field.
        field: crate::fields::Field,
        /// VMWRITE (true) or VMREAD.
        write: bool,
        /// The exception.
        fault: Fault,
    },
    /// VMLAUNCH or VMRESUME raised an exception.
    #[error("{} raised {fault}", if *resume { "VMRESUME" } else { "VMLAUNCH" })]
    EntryFaulted {
        /// VMRESUME (true) or VMLAUNCH.
        resume: bool,
        /// The exception.
        fault: Fault,
    },
    /// More processors than the caller gave state slots for.
    #[error("{count} processors but state for only {capacity}")]
    TooManyProcessors {
        /// The number of processors.
        count: usize,
        /// The number of slots.
        capacity: usize,
    },
}

/// What VMfailInvalid means for an instruction: only what the instruction's
/// operation in the SDM implies.
struct FailInvalidCause(Instruction);

impl core::fmt::Display for FailInvalidCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Instruction::Vmxon => f.write_str(
                " (the VMXON pointer is not 4 KiB aligned or sets bits beyond the physical-address \
                 width, or the region does not start with the VMCS revision identifier; or the \
                 processor is already in VMX root operation with no current VMCS)",
            ),
            Instruction::Vmxoff => f.write_str(
                " (the dual-monitor treatment of SMIs and SMM is active and there is no current \
                 VMCS to hold the error number)",
            ),
            Instruction::Vmclear => f.write_str(
                " (the VMCS pointer is not 4 KiB aligned, sets bits beyond the physical-address \
                 width or is the VMXON pointer, and there is no current VMCS to hold the error \
                 number)",
            ),
            Instruction::Vmptrld => f.write_str(
                " (the VMCS pointer is not 4 KiB aligned, sets bits beyond the physical-address \
                 width or is the VMXON pointer, or the region does not start with the VMCS \
                 revision identifier, and there is no current VMCS to hold the error number)",
            ),
            Instruction::Rdmsr(_) | Instruction::Wrmsr(_) => Ok(()),
        }
    }
}

/// " (a guest of X, which does not expose nested VT-x)", or nothing.
struct GuestOf(Option<Hypervisor>);

impl core::fmt::Display for GuestOf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(hypervisor) => write!(
                f,
                " (a guest of {hypervisor}, which does not expose nested VT-x)"
            ),
            None => Ok(()),
        }
    }
}

/// vmx-core's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// An error on one processor of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("processor {processor}: {error}")]
pub struct ProcessorError {
    /// The processor's index.
    pub processor: usize,
    /// What went wrong there.
    pub error: Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values_that_explain_them() {
        let guest = Error::VmxNotSupported {
            hypervisor: Some(Hypervisor::HyperV),
        };
        assert_eq!(
            std::format!("{guest}"),
            "CPUID.1:ECX.VMX[bit 5] is clear: this processor does not offer VMX (a guest of \
             Microsoft Hyper-V (\"Microsoft Hv\"), which does not expose nested VT-x)"
        );
        let bare = Error::VmxNotSupported { hypervisor: None };
        assert!(std::format!("{bare}").ends_with("does not offer VMX"));
        let amd = Error::NotIntel {
            vendor: Vendor::Amd,
        };
        assert!(
            std::format!("{amd}").contains("AuthenticAMD")
                && std::format!("{amd}").contains("AMD-V")
        );
        let at = ProcessorError {
            processor: 3,
            error: Error::VmFailInvalid {
                instruction: Instruction::Vmxon,
            },
        };
        assert!(std::format!("{at}").starts_with("processor 3: VMXON failed with VMfailInvalid"));
        // VMfailInvalid claims only what the instruction implies.
        let off = std::format!(
            "{}",
            Error::VmFailInvalid {
                instruction: Instruction::Vmxoff
            }
        );
        assert!(
            off.contains("dual-monitor") && !off.contains("pointer"),
            "{off}"
        );
        let on = std::format!("{}", at.error);
        assert!(
            on.contains("no current VMCS") && !on.contains("dual-monitor"),
            "{on}"
        );
    }

    #[test]
    fn vmcs_errors_name_the_control_rule_field_and_instruction() {
        use crate::controls::Control;
        use crate::entry_checks::Rule;
        use crate::fields;
        use crate::instruction::VmxOutcome;
        let control = Error::ControlNotAllowed {
            control: Control::PrimaryProcessorBased,
            bit: 31,
            setting: true,
        };
        assert_eq!(
            std::format!("{control}"),
            "the primary processor-based VM-execution controls need bit 31 to be 1, which the processor does not allow"
        );
        let broken = std::format!(
            "{}",
            Error::EntryRulesBroken {
                rule: Rule::HostCsTrNotNull,
                failing: 2
            }
        );
        assert!(
            broken.starts_with(
                "the VMCS breaks 2 VM-entry rule(s), the first: SDM \"Checks on Host Segment"
            ) && broken.contains("CS and TR cannot be 0000H"),
            "{broken}"
        );
        let write = Error::VmcsFieldFailed {
            field: fields::GUEST_RIP,
            write: true,
            outcome: VmxOutcome::FailInvalid,
        };
        assert_eq!(
            std::format!("{write}"),
            "VMWRITE of VMCS field 0x681e failed with VMfailInvalid"
        );
        let read = Error::VmcsFieldFaulted {
            field: fields::VM_EXIT_REASON,
            write: false,
            fault: Fault::InvalidOpcode,
        };
        assert_eq!(
            std::format!("{read}"),
            "VMREAD of VMCS field 0x4402 raised #UD (vector 6)"
        );
        let entry = Error::EntryFaulted {
            resume: true,
            fault: Fault::GeneralProtection,
        };
        assert_eq!(std::format!("{entry}"), "VMRESUME raised #GP (vector 13)");
    }
}
