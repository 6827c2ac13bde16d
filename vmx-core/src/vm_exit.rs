//! What VMLAUNCH and VMRESUME lead to (SDM, "VM Entries": "VM-Entry
//! Failures During or After Loading Guest State"; "VM Exits": "Basic VM-Exit
//! Information"; Appendix "VMX Basic Exit Reasons"): the instruction fails
//! (VMfailInvalid, or VMfailValid with the VM-instruction error), VM entry
//! fails while loading guest state (a VM exit whose exit reason has bit 31
//! set, with its qualification), or the guest runs until a VM exit, whose
//! basic reason is decoded.

use crate::instruction::VmInstructionError;

macro_rules! exit_reasons {
    ($($number:literal => $name:ident: $text:literal,)*) => {
        /// A basic exit reason (bits 15:0 of the exit-reason field), named
        /// as in the SDM's appendix "VMX Basic Exit Reasons". Numbers the
        /// SDM does not define are kept as [`BasicExitReason::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BasicExitReason {
            $(
                #[doc = concat!($number, ": ", $text, ".")]
                $name,
            )*
            /// A number the SDM does not define.
            Other(u16),
        }

        impl BasicExitReason {
            /// Every named reason.
            pub const ALL: &'static [Self] = &[$(Self::$name,)*];

            /// The reason with this number.
            #[must_use]
            pub const fn from_number(number: u16) -> Self {
                match number {
                    $($number => Self::$name,)*
                    other => Self::Other(other),
                }
            }

            /// The number.
            #[must_use]
            pub const fn number(self) -> u16 {
                match self {
                    $(Self::$name => $number,)*
                    Self::Other(number) => number,
                }
            }

            /// The SDM's name.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                    Self::Other(_) => "undefined exit reason",
                }
            }
        }
    };
}

exit_reasons! {
    0 => ExceptionOrNmi: "Exception or non-maskable interrupt (NMI)",
    1 => ExternalInterrupt: "External interrupt",
    2 => TripleFault: "Triple fault",
    3 => Init: "INIT signal",
    4 => StartupIpi: "Start-up IPI (SIPI)",
    5 => IoSmi: "I/O system-management interrupt (SMI)",
    6 => OtherSmi: "Other SMI",
    7 => InterruptWindow: "Interrupt window",
    8 => NmiWindow: "NMI window",
    9 => TaskSwitch: "Task switch",
    10 => Cpuid: "CPUID",
    11 => Getsec: "GETSEC",
    12 => Hlt: "HLT",
    13 => Invd: "INVD",
    14 => Invlpg: "INVLPG",
    15 => Rdpmc: "RDPMC",
    16 => Rdtsc: "RDTSC",
    17 => Rsm: "RSM",
    18 => Vmcall: "VMCALL",
    19 => Vmclear: "VMCLEAR",
    20 => Vmlaunch: "VMLAUNCH",
    21 => Vmptrld: "VMPTRLD",
    22 => Vmptrst: "VMPTRST",
    23 => Vmread: "VMREAD",
    24 => Vmresume: "VMRESUME",
    25 => Vmwrite: "VMWRITE",
    26 => Vmxoff: "VMXOFF",
    27 => Vmxon: "VMXON",
    28 => ControlRegisterAccess: "Control-register accesses",
    29 => MovDr: "MOV DR",
    30 => IoInstruction: "I/O instruction",
    31 => Rdmsr: "RDMSR",
    32 => Wrmsr: "WRMSR",
    33 => InvalidGuestState: "VM-entry failure due to invalid guest state",
    34 => MsrLoading: "VM-entry failure due to MSR loading",
    36 => Mwait: "MWAIT",
    37 => MonitorTrapFlag: "Monitor trap flag",
    39 => Monitor: "MONITOR",
    40 => Pause: "PAUSE",
    41 => MachineCheck: "VM-entry failure due to machine-check event",
    43 => TprBelowThreshold: "TPR below threshold",
    44 => ApicAccess: "APIC access",
    45 => VirtualizedEoi: "Virtualized EOI",
    46 => GdtrIdtrAccess: "Access to GDTR or IDTR",
    47 => LdtrTrAccess: "Access to LDTR or TR",
    48 => EptViolation: "EPT violation",
    49 => EptMisconfiguration: "EPT misconfiguration",
    50 => Invept: "INVEPT",
    51 => Rdtscp: "RDTSCP",
    52 => PreemptionTimer: "VMX-preemption timer expired",
    53 => Invvpid: "INVVPID",
    54 => Wbinvd: "WBINVD or WBNOINVD",
    55 => Xsetbv: "XSETBV",
    56 => ApicWrite: "APIC write",
    57 => Rdrand: "RDRAND",
    58 => Invpcid: "INVPCID",
    59 => Vmfunc: "VMFUNC",
    60 => Encls: "ENCLS",
    61 => Rdseed: "RDSEED",
    62 => PmlFull: "Page-modification log full",
    63 => Xsaves: "XSAVES",
    64 => Xrstors: "XRSTORS",
    65 => Pconfig: "PCONFIG",
    66 => SppEvent: "SPP-related event",
    67 => Umwait: "UMWAIT",
    68 => Tpause: "TPAUSE",
    69 => Loadiwkey: "LOADIWKEY",
    70 => Enclv: "ENCLV",
    72 => EnqcmdPasid: "ENQCMD PASID translation failure",
    73 => EnqcmdsPasid: "ENQCMDS PASID translation failure",
    74 => BusLock: "Bus lock",
    75 => InstructionTimeout: "Instruction timeout",
    76 => Seamcall: "SEAMCALL",
    77 => Tdcall: "TDCALL",
    78 => Rdmsrlist: "RDMSRLIST",
    79 => Wrmsrlist: "WRMSRLIST",
}

impl core::fmt::Display for BasicExitReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.number(), self.name())
    }
}

/// The exit-reason field (SDM, "Basic VM-Exit Information").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitReason(u32);

impl ExitReason {
    /// Wraps the field's value.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw value.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Bits 15:0.
    #[must_use]
    pub const fn basic(self) -> BasicExitReason {
        BasicExitReason::from_number(self.0 as u16)
    }

    /// Bit 31: VM-entry failure.
    #[must_use]
    pub const fn entry_failure(self) -> bool {
        self.0 & (1 << 31) != 0
    }
}

/// A VM exit: the guest ran and the processor came back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmExit {
    /// The basic exit reason.
    pub reason: BasicExitReason,
    /// The exit qualification.
    pub qualification: u64,
    /// The VM-exit instruction length (meaningful for exits caused by an
    /// instruction).
    pub instruction_length: u32,
    /// The guest's RIP at the exit.
    pub guest_rip: u64,
}

/// What a VMLAUNCH or VMRESUME came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryOutcome {
    /// VMfailInvalid: there is no current VMCS.
    FailInvalid,
    /// VMfailValid: the VMCS was refused before VM entry began (e.g. 7,
    /// invalid control fields; 8, invalid host-state fields; 4, VMLAUNCH
    /// of a VMCS that is not clear).
    FailValid(VmInstructionError),
    /// VM entry failed while loading guest state: the exit reason has bit
    /// 31 set; the processor is back in the host.
    EntryFailure {
        /// The basic exit reason (33 invalid guest state, 34 MSR loading,
        /// 41 machine-check event).
        reason: BasicExitReason,
        /// The exit qualification (for reason 33: 0, or 2 PDPTE loading,
        /// 3 NMI injection, 4 VMCS link pointer).
        qualification: u64,
    },
    /// The guest ran until a VM exit.
    Exit(VmExit),
}

impl core::fmt::Display for EntryOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FailInvalid => f.write_str("VMfailInvalid (no current VMCS)"),
            Self::FailValid(error) => write!(f, "VMfailValid, {error}"),
            Self::EntryFailure {
                reason,
                qualification,
            } => write!(
                f,
                "VM-entry failure: exit reason {reason} with bit 31 set, qualification {qualification}"
            ),
            Self::Exit(exit) => write!(
                f,
                "VM exit: {} at guest RIP {:#x} (instruction length {}, qualification {:#x})",
                exit.reason, exit.guest_rip, exit.instruction_length, exit.qualification
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_reason_round_trips_and_unknown_numbers_are_kept() {
        for &reason in BasicExitReason::ALL {
            assert_eq!(BasicExitReason::from_number(reason.number()), reason);
        }
        assert_eq!(BasicExitReason::from_number(35), BasicExitReason::Other(35));
        assert_eq!(BasicExitReason::from_number(10).name(), "CPUID");
        assert_eq!(std::format!("{}", BasicExitReason::Vmcall), "18 (VMCALL)");
    }

    #[test]
    fn the_exit_reason_field_splits_into_basic_reason_and_failure_bit() {
        let failed = ExitReason::from_raw(0x8000_0021);
        assert!(failed.entry_failure());
        assert_eq!(failed.basic(), BasicExitReason::InvalidGuestState);
        let cpuid = ExitReason::from_raw(10);
        assert!(!cpuid.entry_failure());
        assert_eq!(cpuid.basic(), BasicExitReason::Cpuid);
    }
}
