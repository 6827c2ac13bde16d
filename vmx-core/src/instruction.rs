//! VMX instruction outcomes: the SDM's "Conventions" for VMX instructions
//! (VMsucceed, VMfailInvalid, VMfailValid) and the "VM-Instruction Error
//! Numbers" table.

/// How a VMX instruction completed, read from RFLAGS (and, for
/// VMfailValid, the VM-instruction error field of the current VMCS).
///
/// SDM, "Conventions": VMsucceed clears CF, PF, AF, ZF, SF and OF;
/// VMfailInvalid sets CF; VMfailValid sets ZF and stores an error number in
/// the VM-instruction error field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmxOutcome {
    /// CF = 0 and ZF = 0.
    Succeed,
    /// CF = 1: there is no current VMCS to hold an error number (for
    /// VMXON: a bad region pointer or revision identifier).
    FailInvalid,
    /// ZF = 1, with the VM-instruction error number.
    FailValid(VmInstructionError),
}

impl VmxOutcome {
    /// Decodes RFLAGS after a VMX instruction. `error` is called to read the
    /// VM-instruction error field only when ZF says there is one.
    #[must_use]
    pub fn from_rflags(rflags: u64, error: impl FnOnce() -> u32) -> Self {
        if rflags & CF != 0 {
            Self::FailInvalid
        } else if rflags & ZF != 0 {
            Self::FailValid(VmInstructionError::from_number(error()))
        } else {
            Self::Succeed
        }
    }
}

/// RFLAGS.CF.
const CF: u64 = 1 << 0;
/// RFLAGS.PF.
const PF: u64 = 1 << 2;
/// RFLAGS.AF.
const AF: u64 = 1 << 4;
/// RFLAGS.ZF.
const ZF: u64 = 1 << 6;
/// RFLAGS.SF.
const SF: u64 = 1 << 7;
/// RFLAGS.OF.
const OF: u64 = 1 << 11;

/// The six arithmetic flags every VMX instruction outcome writes.
pub const VMX_OUTCOME_FLAGS: u64 = CF | PF | AF | ZF | SF | OF;

/// Whether `rflags` can be what a VMX instruction left: SDM,
/// "Conventions": VMsucceed clears CF, PF, AF, ZF, SF and OF; VMfailInvalid
/// sets CF and clears the other five; VMfailValid sets ZF and clears the
/// other five. So after any outcome PF, AF, SF and OF are clear and at most
/// one of CF and ZF is set.
///
/// A test build that sets all six before the instruction (vmx-arch's
/// `preset-flags`) proves with this that it read the flags the instruction
/// wrote: the preset value itself is never a VMX outcome.
#[must_use]
pub const fn written_by_vmx_instruction(rflags: u64) -> bool {
    rflags & (PF | AF | SF | OF) == 0 && rflags & (CF | ZF) != (CF | ZF)
}

impl core::fmt::Display for VmxOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Succeed => f.write_str("VMsucceed"),
            Self::FailInvalid => f.write_str("VMfailInvalid"),
            Self::FailValid(error) => write!(f, "VMfailValid({error})"),
        }
    }
}

macro_rules! vm_instruction_errors {
    ($($number:literal => $name:ident: $text:literal,)*) => {
        /// A VM-instruction error number (SDM, "VM-Instruction Error
        /// Numbers"). Numbers the SDM does not define are kept as
        /// [`VmInstructionError::Undefined`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum VmInstructionError {
            $(
                #[doc = $text]
                $name,
            )*
            /// A number the SDM does not define (14, 21 and 27 are
            /// reserved), kept as read.
            Undefined(u32),
        }

        impl VmInstructionError {
            /// The error for a number read from the VM-instruction error
            /// field.
            #[must_use]
            pub const fn from_number(number: u32) -> Self {
                match number {
                    $($number => Self::$name,)*
                    other => Self::Undefined(other),
                }
            }

            /// The number as the SDM gives it.
            #[must_use]
            pub const fn number(self) -> u32 {
                match self {
                    $(Self::$name => $number,)*
                    Self::Undefined(number) => number,
                }
            }

            /// The SDM's description.
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                    Self::Undefined(_) => "error number not defined by the SDM",
                }
            }
        }
    };
}

vm_instruction_errors! {
    1 => VmcallInVmxRoot: "VMCALL executed in VMX root operation",
    2 => VmclearInvalidAddress: "VMCLEAR with invalid physical address",
    3 => VmclearVmxonPointer: "VMCLEAR with VMXON pointer",
    4 => VmlaunchNonClearVmcs: "VMLAUNCH with non-clear VMCS",
    5 => VmresumeNonLaunchedVmcs: "VMRESUME with non-launched VMCS",
    6 => VmresumeAfterVmxoff: "VMRESUME after VMXOFF",
    7 => EntryInvalidControlFields: "VM entry with invalid control field(s)",
    8 => EntryInvalidHostStateFields: "VM entry with invalid host-state field(s)",
    9 => VmptrldInvalidAddress: "VMPTRLD with invalid physical address",
    10 => VmptrldVmxonPointer: "VMPTRLD with VMXON pointer",
    11 => VmptrldIncorrectRevision: "VMPTRLD with incorrect VMCS revision identifier",
    12 => UnsupportedVmcsComponent: "VMREAD/VMWRITE from/to unsupported VMCS component",
    13 => VmwriteReadOnlyComponent: "VMWRITE to read-only VMCS component",
    15 => VmxonInVmxRoot: "VMXON executed in VMX root operation",
    16 => EntryInvalidExecutiveVmcsPointer: "VM entry with invalid executive-VMCS pointer",
    17 => EntryNonLaunchedExecutiveVmcs: "VM entry with non-launched executive VMCS",
    18 => EntryExecutiveVmcsNotVmxonPointer: "VM entry with executive-VMCS pointer not VMXON pointer",
    19 => VmcallNonClearVmcs: "VMCALL with non-clear VMCS",
    20 => VmcallInvalidExitControls: "VMCALL with invalid VM-exit control fields",
    22 => VmcallIncorrectMsegRevision: "VMCALL with incorrect MSEG revision identifier",
    23 => VmxoffUnderDualMonitor: "VMXOFF under dual-monitor treatment of SMIs and SMM",
    24 => VmcallInvalidSmmMonitorFeatures: "VMCALL with invalid SMM-monitor features",
    25 => EntryInvalidExecutiveControls: "VM entry with invalid VM-execution control fields in executive VMCS",
    26 => EntryEventsBlockedByMovSs: "VM entry with events blocked by MOV SS",
    28 => InvalidInveptInvvpidOperand: "Invalid operand to INVEPT/INVVPID",
}

impl core::fmt::Display for VmInstructionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "error {}: {}", self.number(), self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_number_round_trips_and_reserved_ones_stay_undefined() {
        for number in 0..64 {
            let error = VmInstructionError::from_number(number);
            assert_eq!(error.number(), number);
            let reserved = matches!(number, 0 | 14 | 21 | 27) || number > 28;
            assert_eq!(
                matches!(error, VmInstructionError::Undefined(_)),
                reserved,
                "number {number}"
            );
        }
        assert_eq!(
            VmInstructionError::from_number(15),
            VmInstructionError::VmxonInVmxRoot
        );
    }

    #[test]
    fn only_what_a_vmx_outcome_leaves_counts_as_written() {
        // RFLAGS bit 1 is always set; the interrupt flag is not touched.
        for untouched in [0x2, 0x202] {
            assert!(written_by_vmx_instruction(untouched)); // VMsucceed
            assert!(written_by_vmx_instruction(untouched | CF)); // VMfailInvalid
            assert!(written_by_vmx_instruction(untouched | ZF)); // VMfailValid
            // The preset of vmx-arch's `preset-flags` build, left unwritten.
            assert!(!written_by_vmx_instruction(untouched | VMX_OUTCOME_FLAGS));
            assert!(!written_by_vmx_instruction(untouched | CF | ZF));
            for flag in [PF, AF, SF, OF] {
                assert!(!written_by_vmx_instruction(untouched | flag));
            }
        }
    }

    #[test]
    fn rflags_decode_follows_the_sdm_conventions() {
        let no_read = || panic!("error field read without ZF");
        assert_eq!(VmxOutcome::from_rflags(0x2, no_read), VmxOutcome::Succeed);
        assert_eq!(
            VmxOutcome::from_rflags(0x3, no_read),
            VmxOutcome::FailInvalid
        );
        assert_eq!(
            VmxOutcome::from_rflags(0x42, || 15),
            VmxOutcome::FailValid(VmInstructionError::VmxonInVmxRoot)
        );
    }
}
