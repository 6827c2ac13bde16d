//! The checks VM entry makes of a VMCS before it enters the guest (SDM,
//! "VM Entries": "Checks on VMX Controls and Host-State Area" and "Checks
//! on the Guest State Area"), applied to a [`VmcsDescription`] before
//! anything is written, so that a VMCS the processor would refuse is
//! refused in software with the rule it breaks named.
//!
//! Each [`Rule`] is one requirement of the SDM, named after the section
//! that states it, and says how the processor reports a VMCS that breaks
//! it ([`Rule::failure`]): a control-field rule is VMfailValid with error 7
//! ("VM entry with invalid control field(s)"), a host-state rule VMfailValid
//! with error 8 ("VM entry with invalid host-state field(s)"), a guest-state
//! rule a VM exit with reason 33 ("VM-entry failure due to invalid guest
//! state", bit 31 set). [`check`] returns every rule that fails.
//!
//! ## Not implemented
//!
//! vmx-core checks the fields it writes. The checks of controls it never
//! sets, and the checks that need memory or state vmx-core does not have,
//! are not made here (the processor still makes them):
//! - the I/O-bitmap, MSR-bitmap, virtual-APIC, APIC-access,
//!   posted-interrupt, EPT, VMCS-shadowing, PML, VM-function and
//!   ENCLS-exiting controls and addresses, the TPR threshold, VPID;
//! - the VM-exit MSR-store and MSR-load and VM-entry MSR-load areas
//!   (vmx-core writes their counts as 0), and IA32_PERF_GLOBAL_CTRL, BNDCFGS,
//!   RTIT_CTL, CET, PKRS and the other MSRs a "load" control it never sets
//!   would load;
//! - event injection beyond the reserved bits of the VM-entry
//!   interruption-information field (vmx-core injects nothing);
//! - the host RIP (canonical) and RSP, which the backend writes;
//! - IA32_DEBUGCTL's reserved bits (model specific), the guest's PDPTEs
//!   (PAE paging without IA-32e mode), SMM and dual-monitor checks, the
//!   real-address and virtual-8086 mode segment rules, unrestricted guests,
//!   and the shadow-VMCS checks of a VMCS link pointer other than all ones
//!   (its revision identifier in memory);
//! - the interruptibility and activity rules tied to event injection, the
//!   pending debug exceptions' BS bit against RFLAGS.TF and
//!   IA32_DEBUGCTL.BTF, and activity states other than active and HLT
//!   beyond their support in IA32_VMX_MISC.

use crate::controls::{self, AllowedSettings, Control, ControlCapabilities};
use crate::cpu::Cpu;
use crate::cpuid::CpuIdentity;
use crate::error::{Error, Instruction, Result};
use crate::fixed_bits::FixedBits;
use crate::instruction::VmInstructionError;
use crate::state::{Segment, VmcsDescription};
use crate::vm_exit::BasicExitReason;

/// What the checks need to know of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryCapabilities {
    /// The allowed settings of the controls.
    pub controls: ControlCapabilities,
    /// IA32_VMX_CR0_FIXED0 and FIXED1.
    pub cr0_fixed: FixedBits,
    /// IA32_VMX_CR4_FIXED0 and FIXED1.
    pub cr4_fixed: FixedBits,
    /// IA32_VMX_MISC.
    pub misc: u64,
    /// The physical-address width, `CPUID.80000008H:EAX[7:0]`.
    pub physical_address_width: u8,
    /// The linear-address width, `CPUID.80000008H:EAX[15:8]` (48 when the
    /// leaf is missing).
    pub linear_address_width: u8,
}

impl EntryCapabilities {
    /// Reads them from the processor.
    ///
    /// # Errors
    /// [`Error::Faulted`] when an RDMSR faults; [`Error::VmxNotSupported`]
    /// when CPUID cannot identify the processor.
    pub fn read<C: Cpu + ?Sized>(cpu: &mut C) -> Result<Self> {
        let controls = ControlCapabilities::read(cpu)?;
        let mut msr = |msr| {
            cpu.read_msr(msr).map_err(|fault| Error::Faulted {
                instruction: Instruction::Rdmsr(msr),
                fault,
            })
        };
        let cr0_fixed = FixedBits::new(msr(0x486)?, msr(0x487)?);
        let cr4_fixed = FixedBits::new(msr(0x488)?, msr(0x489)?);
        let misc = msr(0x485)?;
        let identity = CpuIdentity::read(|leaf, subleaf| Some(cpu.cpuid(leaf, subleaf)))
            .ok_or(Error::VmxNotSupported { hypervisor: None })?;
        let extended_max = cpu.cpuid(0x8000_0000, 0).eax;
        let linear_address_width = if extended_max >= 0x8000_0008 {
            match (cpu.cpuid(0x8000_0008, 0).eax >> 8) as u8 {
                0 => 48,
                width => width,
            }
        } else {
            48
        };
        Ok(Self {
            controls,
            cr0_fixed,
            cr4_fixed,
            misc,
            physical_address_width: identity.physical_address_width,
            linear_address_width,
        })
    }
}

/// The part of the VMCS a rule is about, which decides how VM entry fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// The VMX controls: VMfailValid(7).
    Controls,
    /// The host-state area (and the address-space size rules): VMfailValid(8).
    Host,
    /// The guest-state area: a VM exit with reason 33 and bit 31 set.
    Guest,
}

/// How the processor reports a VMCS that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryFailure {
    /// VMLAUNCH or VMRESUME fails with VMfailValid and this error.
    VmFailValid(VmInstructionError),
    /// VM entry fails while loading guest state: a VM exit with this basic
    /// reason, bit 31 of the exit reason set, and this exit qualification.
    ExitReason {
        /// The basic exit reason.
        reason: BasicExitReason,
        /// The exit qualification.
        qualification: u64,
    },
}

macro_rules! rules {
    ($($name:ident => $area:ident, $section:expr, $text:literal;)*) => {
        /// One VM-entry check of the SDM.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Rule {
            $(
                #[doc = $text]
                $name,
            )*
        }

        impl Rule {
            /// Every rule, in the SDM's order.
            pub const ALL: &'static [Self] = &[$(Self::$name,)*];

            /// The SDM section title that states the rule.
            #[must_use]
            pub const fn section(self) -> &'static str {
                match self {
                    $(Self::$name => $section,)*
                }
            }

            /// The requirement, close to the SDM's words.
            #[must_use]
            pub const fn requirement(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                }
            }

            /// The part of the VMCS it is about.
            #[must_use]
            pub const fn area(self) -> Area {
                match self {
                    $(Self::$name => Area::$area,)*
                }
            }

            /// The rule's name, as in [`Rule::from_name`]: its identifier
            /// in kebab case, as the e2e kernel's command line spells it.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => kebab!($name),)*
                }
            }
        }
    };
}

/// An identifier's kebab-case spelling, computed at compile time.
macro_rules! kebab {
    ($name:ident) => {{
        const NAME: &str = stringify!($name);
        const LEN: usize = kebab_len(NAME);
        const BYTES: [u8; LEN] = kebab_bytes::<LEN>(NAME);
        match core::str::from_utf8(&BYTES) {
            Ok(name) => name,
            Err(_) => NAME,
        }
    }};
}

const fn kebab_len(name: &str) -> usize {
    let bytes = name.as_bytes();
    let mut len = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i > 0 && bytes[i].is_ascii_uppercase() {
            len += 1;
        }
        len += 1;
        i += 1;
    }
    len
}

const fn kebab_bytes<const N: usize>(name: &str) -> [u8; N] {
    let bytes = name.as_bytes();
    let mut out = [0u8; N];
    let (mut i, mut j) = (0, 0);
    while i < bytes.len() {
        if i > 0 && bytes[i].is_ascii_uppercase() {
            out[j] = b'-';
            j += 1;
        }
        out[j] = bytes[i].to_ascii_lowercase();
        j += 1;
        i += 1;
    }
    out
}

const EXEC: &str = "Checks on VM-Execution Control Fields";
const EXIT: &str = "Checks on VM-Exit Control Fields";
const ENTRY: &str = "Checks on VM-Entry Control Fields";
const HOST_CR: &str = "Checks on Host Control Registers and MSRs";
const HOST_SEG: &str = "Checks on Host Segment and Descriptor-Table Registers";
const ADDRESS_SPACE: &str = "Checks Related to Address-Space Size";
const GUEST_CR: &str = "Checks on Guest Control Registers, Debug Registers, and MSRs";
const GUEST_SEG: &str = "Checks on Guest Segment Registers";
const GUEST_DT: &str = "Checks on Guest Descriptor-Table Registers";
const GUEST_RIP: &str = "Checks on Guest RIP and RFLAGS";
const GUEST_NONREG: &str = "Checks on Guest Non-Register State";

rules! {
    PinBasedReserved => Controls, EXEC,
        "Reserved bits in the pin-based VM-execution controls must be set properly (IA32_VMX_PINBASED_CTLS, or IA32_VMX_TRUE_PINBASED_CTLS when IA32_VMX_BASIC bit 55 is 1).";
    PrimaryReserved => Controls, EXEC,
        "Reserved bits in the primary processor-based VM-execution controls must be set properly (IA32_VMX_PROCBASED_CTLS, or IA32_VMX_TRUE_PROCBASED_CTLS).";
    SecondaryReserved => Controls, EXEC,
        "If \"activate secondary controls\" is 1, reserved bits in the secondary processor-based VM-execution controls must be cleared (IA32_VMX_PROCBASED_CTLS2).";
    Cr3TargetCount => Controls, EXEC,
        "The CR3-target count must not be greater than the number IA32_VMX_MISC bits 24:16 reports (4 on processors so far).";
    VirtualNmisNeedNmiExiting => Controls, EXEC,
        "If the \"NMI exiting\" VM-execution control is 0, the \"virtual NMIs\" VM-execution control must be 0.";
    NmiWindowNeedsVirtualNmis => Controls, EXEC,
        "If the \"virtual NMIs\" VM-execution control is 0, the \"NMI-window exiting\" VM-execution control must be 0.";
    ExitReserved => Controls, EXIT,
        "Reserved bits in the VM-exit controls must be set properly (IA32_VMX_EXIT_CTLS, or IA32_VMX_TRUE_EXIT_CTLS).";
    SavePreemptionTimerNeedsTimer => Controls, EXIT,
        "If the \"activate VMX-preemption timer\" VM-execution control is 0, the \"save VMX-preemption timer value\" VM-exit control must also be 0.";
    EntryReserved => Controls, ENTRY,
        "Reserved bits in the VM-entry controls must be set properly (IA32_VMX_ENTRY_CTLS, or IA32_VMX_TRUE_ENTRY_CTLS).";
    EntryInterruptionInfoReserved => Controls, ENTRY,
        "Bits 30:12 of the VM-entry interruption-information field are reserved and must be 0 when it is valid (bit 31).";
    EntryToSmmOutsideSmm => Controls, ENTRY,
        "The \"entry to SMM\" and \"deactivate dual-monitor treatment\" VM-entry controls cannot be 1 for a VM entry from outside SMM.";
    HostCr0Fixed => Host, HOST_CR,
        "The CR0 field must not set any bit to a value not supported in VMX operation (IA32_VMX_CR0_FIXED0 and FIXED1).";
    HostCr4Fixed => Host, HOST_CR,
        "The CR4 field must not set any bit to a value not supported in VMX operation (IA32_VMX_CR4_FIXED0 and FIXED1).";
    HostCr3Width => Host, HOST_CR,
        "The CR3 field must be such that bits beyond the processor's physical-address width are 0.";
    HostSysenterCanonical => Host, HOST_CR,
        "The IA32_SYSENTER_ESP and IA32_SYSENTER_EIP fields must each contain a canonical address.";
    HostPat => Host, HOST_CR,
        "If the \"load IA32_PAT\" VM-exit control is 1, each byte of the IA32_PAT field must be a valid memory type (0, 1, 4, 5, 6 or 7).";
    HostEfer => Host, HOST_CR,
        "If the \"load IA32_EFER\" VM-exit control is 1, the reserved bits of the IA32_EFER field must be 0, and LMA and LME must each equal the \"host address-space size\" VM-exit control.";
    HostSelectorRplTi => Host, HOST_SEG,
        "In the selector fields for ES, CS, SS, DS, FS, GS and TR, the RPL (bits 1:0) and the TI flag (bit 2) must be 0.";
    HostCsTrNotNull => Host, HOST_SEG,
        "The selector fields for CS and TR cannot be 0000H.";
    HostSsNotNull => Host, HOST_SEG,
        "The selector field for SS cannot be 0000H if the \"host address-space size\" VM-exit control is 0.";
    HostBasesCanonical => Host, HOST_SEG,
        "The base-address fields for FS, GS, GDTR, IDTR and TR must contain canonical addresses.";
    HostAddressSpaceSizeInIa32e => Host, ADDRESS_SPACE,
        "If the logical processor is in IA-32e mode (IA32_EFER.LMA = 1), the \"host address-space size\" VM-exit control must be 1.";
    HostOutsideIa32e => Host, ADDRESS_SPACE,
        "If the logical processor is outside IA-32e mode, the \"IA-32e mode guest\" VM-entry control and the \"host address-space size\" VM-exit control must be 0.";
    HostAddressSpaceSizePae => Host, ADDRESS_SPACE,
        "If the \"host address-space size\" VM-exit control is 1, bit 5 of the CR4 field (PAE) must be 1.";
    HostAddressSpaceSizeZero => Host, ADDRESS_SPACE,
        "If the \"host address-space size\" VM-exit control is 0, the \"IA-32e mode guest\" VM-entry control must be 0 and bit 17 of the CR4 field (PCIDE) must be 0.";
    GuestCr0Fixed => Guest, GUEST_CR,
        "The CR0 field must not set any bit to a value not supported in VMX operation (IA32_VMX_CR0_FIXED0 and FIXED1); bits 29 (NW) and 30 (CD) are never checked.";
    GuestCr0PgNeedsPe => Guest, GUEST_CR,
        "If bit 31 in the CR0 field (PG) is 1, bit 0 (PE) must also be 1.";
    GuestCr4Fixed => Guest, GUEST_CR,
        "The CR4 field must not set any bit to a value not supported in VMX operation (IA32_VMX_CR4_FIXED0 and FIXED1).";
    GuestIa32eModePaging => Guest, GUEST_CR,
        "If the \"IA-32e mode guest\" VM-entry control is 1, bit 31 in the CR0 field (PG) and bit 5 in the CR4 field (PAE) must be 1.";
    GuestPcideNeedsIa32e => Guest, GUEST_CR,
        "If the \"IA-32e mode guest\" VM-entry control is 0, bit 17 in the CR4 field (PCIDE) must be 0.";
    GuestCr3Width => Guest, GUEST_CR,
        "The CR3 field must be such that bits beyond the processor's physical-address width are 0.";
    GuestDr7 => Guest, GUEST_CR,
        "If the \"load debug controls\" VM-entry control is 1, bits 63:32 in the DR7 field must be 0.";
    GuestSysenterCanonical => Guest, GUEST_CR,
        "The IA32_SYSENTER_ESP and IA32_SYSENTER_EIP fields must each contain a canonical address.";
    GuestPat => Guest, GUEST_CR,
        "If the \"load IA32_PAT\" VM-entry control is 1, each byte of the IA32_PAT field must be a valid memory type (0, 1, 4, 5, 6 or 7).";
    GuestEfer => Guest, GUEST_CR,
        "If the \"load IA32_EFER\" VM-entry control is 1, the reserved bits of the IA32_EFER field must be 0, LMA must equal the \"IA-32e mode guest\" VM-entry control, and, if CR0.PG is 1, LME must equal LMA.";
    GuestTrTi => Guest, GUEST_SEG,
        "TR: the TI flag (bit 2) of the selector must be 0.";
    GuestLdtrTi => Guest, GUEST_SEG,
        "LDTR: if LDTR is usable, the TI flag (bit 2) of the selector must be 0.";
    GuestSsRplCsRpl => Guest, GUEST_SEG,
        "SS: the RPL (bits 1:0) of the selector must equal the RPL of the CS selector.";
    GuestBaseCanonical => Guest, GUEST_SEG,
        "TR, FS, GS: the base address must be canonical; LDTR: if usable, the base address must be canonical.";
    GuestBaseHigh => Guest, GUEST_SEG,
        "CS: bits 63:32 of the base address must be 0; SS, DS, ES: if usable, bits 63:32 of the base address must be 0.";
    GuestCsType => Guest, GUEST_SEG,
        "CS: the type must be 9, 11, 13 or 15 (accessed code segment).";
    GuestSsType => Guest, GUEST_SEG,
        "SS: if usable, the type must be 3 or 7 (read/write, accessed data segment).";
    GuestDataType => Guest, GUEST_SEG,
        "DS, ES, FS, GS: if usable, bit 0 of the type must be 1 (accessed), and if bit 3 is 1 (code segment) bit 1 must be 1 (readable).";
    GuestCodeDataS => Guest, GUEST_SEG,
        "CS, and SS, DS, ES, FS, GS if usable: bit 4 (S) must be 1.";
    GuestCsDpl => Guest, GUEST_SEG,
        "CS: for type 9 or 11 (non-conforming) the DPL must equal the DPL of SS; for type 13 or 15 (conforming) it cannot be greater than the DPL of SS.";
    GuestSsDpl => Guest, GUEST_SEG,
        "SS: the DPL must equal the RPL of the selector.";
    GuestDataDpl => Guest, GUEST_SEG,
        "DS, ES, FS, GS: if usable and of type 0 to 11, the DPL cannot be less than the RPL of the selector.";
    GuestPresent => Guest, GUEST_SEG,
        "CS, and SS, DS, ES, FS, GS if usable: bit 7 (P) must be 1.";
    GuestAccessRightsReserved => Guest, GUEST_SEG,
        "CS, and SS, DS, ES, FS, GS if usable: bits 11:8 and 31:17 of the access rights must be 0.";
    GuestLimitGranularity => Guest, GUEST_SEG,
        "CS, TR, and SS, DS, ES, FS, GS, LDTR if usable: if any bit in limit 11:0 is 0, G must be 0; if any bit in limit 31:20 is 1, G must be 1.";
    GuestCsLongAndD => Guest, GUEST_SEG,
        "CS: if the \"IA-32e mode guest\" VM-entry control is 1 and L (bit 13) is 1, D/B (bit 14) must be 0.";
    GuestTrType => Guest, GUEST_SEG,
        "TR: the type must be 11 (busy 64-bit TSS) in an IA-32e mode guest, 3 or 11 otherwise; S must be 0, P must be 1, bits 11:8 and 31:17 must be 0, and TR must be usable.";
    GuestLdtrType => Guest, GUEST_SEG,
        "LDTR: if usable, the type must be 2 (LDT), S must be 0, P must be 1, and bits 11:8 and 31:17 must be 0.";
    GuestDescriptorTableBase => Guest, GUEST_DT,
        "The base-address fields for GDTR and IDTR must contain canonical addresses.";
    GuestDescriptorTableLimit => Guest, GUEST_DT,
        "Bits 31:16 of the limit fields for GDTR and IDTR must be 0.";
    GuestRip => Guest, GUEST_RIP,
        "RIP: bits 63:32 must be 0 unless the \"IA-32e mode guest\" VM-entry control and CS.L are 1; then, with N < 64 linear-address bits, bits 63:N must be identical (a looser test than canonical, which also takes in bit N-1).";
    GuestRflagsReserved => Guest, GUEST_RIP,
        "RFLAGS: reserved bits 63:22, 15, 5 and 3 must be 0, and bit 1 must be 1.";
    GuestRflagsVm => Guest, GUEST_RIP,
        "RFLAGS: VM (bit 17) must be 0 if the \"IA-32e mode guest\" VM-entry control is 1 or CR0.PE is 0.";
    GuestActivityState => Guest, GUEST_NONREG,
        "The activity-state field must be 0 (active) or a state IA32_VMX_MISC bits 8:6 report as supported (1 HLT, 2 shutdown, 3 wait-for-SIPI).";
    GuestHltNeedsSsDpl0 => Guest, GUEST_NONREG,
        "The activity-state field must not indicate HLT when the DPL in the SS access-rights field is not 0.";
    GuestActivityNeedsNoBlocking => Guest, GUEST_NONREG,
        "The activity-state field must indicate the active state if the interruptibility-state field indicates blocking by STI or by MOV SS (bit 0 or bit 1).";
    GuestInterruptibilityReserved => Guest, GUEST_NONREG,
        "Interruptibility state: reserved bits 31:5 must be 0, and bits 0 (blocking by STI) and 1 (blocking by MOV SS) cannot both be 1.";
    GuestStiBlockingNeedsIf => Guest, GUEST_NONREG,
        "Interruptibility state: bit 0 (blocking by STI) must be 0 if the IF flag (bit 9) is 0 in the RFLAGS field.";
    GuestSmiBlocking => Guest, GUEST_NONREG,
        "Interruptibility state: bit 2 (blocking by SMI) must be 0 if the processor is not in SMM, and 1 if the \"entry to SMM\" VM-entry control is 1.";
    GuestPendingDebugReserved => Guest, GUEST_NONREG,
        "Pending debug exceptions: bits 11:4, bit 13, bit 15 and bits 63:17 are reserved and must be 0.";
    GuestVmcsLinkPointer => Guest, GUEST_NONREG,
        "VMCS link pointer: if it is not FFFFFFFF_FFFFFFFFH, bits 11:0 must be 0 and it must not set bits beyond the physical-address width.";
}

impl Rule {
    /// The rule `name` ([`Rule::name`]) names.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|rule| rule.name() == name)
    }

    /// How the processor reports a VMCS that breaks this rule (SDM,
    /// "Checks on VMX Controls and Host-State Area": VMfailValid with
    /// error 7 or 8; "Loading Guest State" and "VM-Entry Failures During
    /// or After Loading Guest State": exit reason 33 with qualification 0,
    /// or 4 for a VMCS link pointer).
    #[must_use]
    pub const fn failure(self) -> EntryFailure {
        match self.area() {
            Area::Controls => {
                EntryFailure::VmFailValid(VmInstructionError::EntryInvalidControlFields)
            }
            Area::Host => {
                EntryFailure::VmFailValid(VmInstructionError::EntryInvalidHostStateFields)
            }
            Area::Guest => EntryFailure::ExitReason {
                reason: BasicExitReason::InvalidGuestState,
                qualification: if matches!(self, Self::GuestVmcsLinkPointer) {
                    4
                } else {
                    0
                },
            },
        }
    }
}

impl core::fmt::Display for Rule {
    /// `SDM "<section>": <requirement>`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SDM \"{}\": {}", self.section(), self.requirement())
    }
}

/// The rules a VMCS breaks: a set, iterated in the SDM's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Violations(u128);

const _: () = assert!(Rule::ALL.len() <= 128);

impl Violations {
    /// Adds `rule`.
    pub fn insert(&mut self, rule: Rule) {
        self.0 |= 1 << rule as u32;
    }

    /// Whether `rule` fails.
    #[must_use]
    pub const fn contains(&self, rule: Rule) -> bool {
        self.0 & (1 << rule as u32) != 0
    }

    /// Whether every rule holds.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// How many rules fail.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The failing rules, in the SDM's order.
    pub fn iter(&self) -> impl Iterator<Item = Rule> + '_ {
        Rule::ALL
            .iter()
            .copied()
            .filter(|&rule| self.contains(rule))
    }

    /// The first failing rule.
    #[must_use]
    pub fn first(&self) -> Option<Rule> {
        self.iter().next()
    }

    /// The failing rules without `rule`.
    #[must_use]
    pub const fn without(self, rule: Rule) -> Self {
        Self(self.0 & !(1 << rule as u32))
    }

    /// How VM entry would fail: the guest-state checks come after those on
    /// the controls and the host state ("Checking and Loading Guest
    /// State"), so a guest rule decides only when the other two areas hold.
    /// Between the controls and the host state the SDM fixes no order
    /// ("VM-Instruction Error Numbers": the checks "may be performed in
    /// any order", and "different processors may give different error
    /// numbers for the same VMCS"): when both fail, this answers error 7,
    /// as Bochs and KVM's nested VMX check the controls first, but a
    /// processor may answer 8. The guest-state checks, too, "may be
    /// performed in any order" ("Checks on the Guest State Area"): with a
    /// broken VMCS link pointer and another guest rule, the qualification
    /// may be 4 or 0; this answers that of the first guest rule in the
    /// SDM's order.
    #[must_use]
    pub fn failure(&self) -> Option<EntryFailure> {
        [Area::Controls, Area::Host, Area::Guest]
            .into_iter()
            .find_map(|area| self.iter().find(|rule| rule.area() == area))
            .map(Rule::failure)
    }
}

/// Whether `address` is canonical for a `width`-bit linear address: bits
/// 63 to `width - 1` all equal. A width outside 1 to 64 counts as 64.
#[must_use]
pub const fn is_canonical(address: u64, width: u8) -> bool {
    let width = if width == 0 || width > 64 { 64 } else { width };
    let shift = 64 - width as u32;
    (((address << shift) as i64) >> shift) as u64 == address
}

/// Whether every byte of a PAT value is a valid memory type (0 UC, 1 WC,
/// 4 WT, 5 WP, 6 WB, 7 UC-).
#[must_use]
pub const fn is_valid_pat(pat: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        if !matches!((pat >> (8 * i)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7) {
            return false;
        }
        i += 1;
    }
    true
}

/// IA32_EFER bits that are not reserved on Intel 64 (SDM Vol. 4,
/// "Architectural MSRs": IA32_EFER): SCE (0), LME (8), LMA (10), NXE (11).
/// Bits 15:12 (SVME, LMSLE, FFXSR, TCE) are AMD's; the Intel processor
/// reserves them, and VM entry checks the "reserved bits" of the processor
/// it runs on.
const EFER_DEFINED: u64 = 1 | 1 << 8 | 1 << 10 | 1 << 11;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const RFLAGS_VM: u64 = 1 << 17;

fn within(allowed: AllowedSettings, value: u32) -> bool {
    allowed.allows(value)
}

fn fixed(bits: FixedBits, value: u64) -> bool {
    bits.allows(value)
}

/// Applies every implemented rule to `vmcs` on a processor with
/// `capabilities`; the result names every rule that fails.
#[must_use]
pub fn check(vmcs: &VmcsDescription, capabilities: &EntryCapabilities) -> Violations {
    let mut failed = Violations::default();
    let mut rule = |rule: Rule, holds: bool| {
        if !holds {
            failed.insert(rule);
        }
    };
    let c = &vmcs.controls;
    let caps = &capabilities.controls;
    let linear = capabilities.linear_address_width;
    let canonical = |address| is_canonical(address, linear);
    // A width of 64 or more (CPUID reports it in a byte) leaves no bit
    // beyond it; shifting by it would overflow.
    let within_width = |address: u64| {
        capabilities.physical_address_width >= 64
            || address >> capabilities.physical_address_width == 0
    };

    // Checks on VM-Execution Control Fields.
    rule(
        Rule::PinBasedReserved,
        within(caps.of(Control::PinBased), c.pin_based),
    );
    rule(
        Rule::PrimaryReserved,
        within(caps.of(Control::PrimaryProcessorBased), c.primary),
    );
    let secondary_on = c.primary & controls::primary::ACTIVATE_SECONDARY_CONTROLS != 0;
    rule(
        Rule::SecondaryReserved,
        !secondary_on || within(caps.of(Control::SecondaryProcessorBased), c.secondary),
    );
    let cr3_targets = (capabilities.misc >> 16) & 0x1ff;
    rule(
        Rule::Cr3TargetCount,
        u64::from(vmcs.cr3_target_count) <= cr3_targets,
    );
    let nmi_exiting = c.pin_based & controls::pin::NMI_EXITING != 0;
    let virtual_nmis = c.pin_based & controls::pin::VIRTUAL_NMIS != 0;
    rule(
        Rule::VirtualNmisNeedNmiExiting,
        nmi_exiting || !virtual_nmis,
    );
    rule(
        Rule::NmiWindowNeedsVirtualNmis,
        virtual_nmis || c.primary & controls::primary::NMI_WINDOW_EXITING == 0,
    );
    // Checks on VM-Exit Control Fields.
    rule(Rule::ExitReserved, within(caps.of(Control::VmExit), c.exit));
    rule(
        Rule::SavePreemptionTimerNeedsTimer,
        c.pin_based & controls::pin::PREEMPTION_TIMER != 0
            || c.exit & controls::exit::SAVE_PREEMPTION_TIMER == 0,
    );
    // Checks on VM-Entry Control Fields.
    rule(
        Rule::EntryReserved,
        within(caps.of(Control::VmEntry), c.entry),
    );
    let info = vmcs.entry_interruption_info;
    rule(
        Rule::EntryInterruptionInfoReserved,
        info & (1 << 31) == 0 || info & 0x7fff_f000 == 0,
    );
    rule(
        Rule::EntryToSmmOutsideSmm,
        c.entry & (controls::entry::ENTRY_TO_SMM | controls::entry::DEACTIVATE_DUAL_MONITOR) == 0,
    );

    // Checks on Host Control Registers and MSRs.
    let h = &vmcs.host;
    let host_64 = c.exit & controls::exit::HOST_ADDRESS_SPACE_SIZE != 0;
    rule(Rule::HostCr0Fixed, fixed(capabilities.cr0_fixed, h.cr0));
    rule(Rule::HostCr4Fixed, fixed(capabilities.cr4_fixed, h.cr4));
    rule(Rule::HostCr3Width, within_width(h.cr3));
    rule(
        Rule::HostSysenterCanonical,
        canonical(h.sysenter_esp) && canonical(h.sysenter_eip),
    );
    rule(
        Rule::HostPat,
        c.exit & controls::exit::LOAD_PAT == 0 || is_valid_pat(h.pat),
    );
    let efer_matches = |efer: u64, long: bool| {
        efer & !EFER_DEFINED == 0
            && (efer & EFER_LMA != 0) == long
            && (efer & EFER_LME != 0) == long
    };
    rule(
        Rule::HostEfer,
        c.exit & controls::exit::LOAD_EFER == 0 || efer_matches(h.efer, host_64),
    );
    // Checks on Host Segment and Descriptor-Table Registers.
    let s = &h.selectors;
    rule(
        Rule::HostSelectorRplTi,
        [s.es, s.cs, s.ss, s.ds, s.fs, s.gs, s.tr]
            .iter()
            .all(|selector| selector & 7 == 0),
    );
    rule(Rule::HostCsTrNotNull, s.cs != 0 && s.tr != 0);
    rule(Rule::HostSsNotNull, host_64 || s.ss != 0);
    rule(
        Rule::HostBasesCanonical,
        [h.fs_base, h.gs_base, h.gdtr.base, h.idtr.base, h.tr_base]
            .into_iter()
            .all(canonical),
    );
    // Checks Related to Address-Space Size. "In IA-32e mode" is the
    // processor's IA32_EFER.LMA, which the host state captured.
    let in_ia32e = h.efer & EFER_LMA != 0;
    let ia32e_guest = c.entry & controls::entry::IA32E_MODE_GUEST != 0;
    rule(Rule::HostAddressSpaceSizeInIa32e, !in_ia32e || host_64);
    rule(
        Rule::HostOutsideIa32e,
        in_ia32e || (!ia32e_guest && !host_64),
    );
    rule(
        Rule::HostAddressSpaceSizePae,
        !host_64 || h.cr4 & CR4_PAE != 0,
    );
    rule(
        Rule::HostAddressSpaceSizeZero,
        host_64 || (!ia32e_guest && h.cr4 & CR4_PCIDE == 0),
    );

    // Checks on Guest Control Registers, Debug Registers, and MSRs.
    let g = &vmcs.guest;
    // NW (bit 29) and CD (bit 30) are never checked: VM entry does not
    // load them. (PE and PG would not be either with "unrestricted guest",
    // which vmx-core does not set.)
    let nw_cd = CR0_NW | CR0_CD;
    rule(
        Rule::GuestCr0Fixed,
        fixed(
            capabilities.cr0_fixed,
            (g.cr0 & !nw_cd) | (capabilities.cr0_fixed.must_be_one() & nw_cd),
        ),
    );
    rule(
        Rule::GuestCr0PgNeedsPe,
        g.cr0 & CR0_PG == 0 || g.cr0 & CR0_PE != 0,
    );
    rule(Rule::GuestCr4Fixed, fixed(capabilities.cr4_fixed, g.cr4));
    rule(
        Rule::GuestIa32eModePaging,
        !ia32e_guest || (g.cr0 & CR0_PG != 0 && g.cr4 & CR4_PAE != 0),
    );
    rule(
        Rule::GuestPcideNeedsIa32e,
        ia32e_guest || g.cr4 & CR4_PCIDE == 0,
    );
    rule(Rule::GuestCr3Width, within_width(g.cr3));
    rule(
        Rule::GuestDr7,
        c.entry & controls::entry::LOAD_DEBUG_CONTROLS == 0 || g.dr7 >> 32 == 0,
    );
    rule(
        Rule::GuestSysenterCanonical,
        canonical(g.sysenter_esp) && canonical(g.sysenter_eip),
    );
    rule(
        Rule::GuestPat,
        c.entry & controls::entry::LOAD_PAT == 0 || is_valid_pat(g.pat),
    );
    rule(
        Rule::GuestEfer,
        c.entry & controls::entry::LOAD_EFER == 0
            || (g.efer & !EFER_DEFINED == 0
                && (g.efer & EFER_LMA != 0) == ia32e_guest
                && (g.cr0 & CR0_PG == 0 || (g.efer & EFER_LME != 0) == ia32e_guest)),
    );

    // Checks on Guest Segment Registers (protected mode, no unrestricted
    // guest, no virtual-8086 mode).
    let usable_data = [&g.ss, &g.ds, &g.es, &g.fs, &g.gs];
    rule(Rule::GuestTrTi, !g.tr.ti());
    rule(Rule::GuestLdtrTi, !g.ldtr.usable() || !g.ldtr.ti());
    rule(Rule::GuestSsRplCsRpl, g.ss.rpl() == g.cs.rpl());
    rule(
        Rule::GuestBaseCanonical,
        canonical(g.tr.base)
            && canonical(g.fs.base)
            && canonical(g.gs.base)
            && (!g.ldtr.usable() || canonical(g.ldtr.base)),
    );
    rule(
        Rule::GuestBaseHigh,
        g.cs.base >> 32 == 0
            && [&g.ss, &g.ds, &g.es]
                .iter()
                .all(|s| !s.usable() || s.base >> 32 == 0),
    );
    rule(
        Rule::GuestCsType,
        matches!(g.cs.segment_type(), 9 | 11 | 13 | 15),
    );
    rule(
        Rule::GuestSsType,
        !g.ss.usable() || matches!(g.ss.segment_type(), 3 | 7),
    );
    rule(
        Rule::GuestDataType,
        [&g.ds, &g.es, &g.fs, &g.gs].iter().all(|s| {
            !s.usable()
                || (s.segment_type() & 1 != 0
                    && (s.segment_type() & 8 == 0 || s.segment_type() & 2 != 0))
        }),
    );
    rule(
        Rule::GuestCodeDataS,
        g.cs.s() && usable_data.iter().all(|s| !s.usable() || s.s()),
    );
    rule(
        Rule::GuestCsDpl,
        match g.cs.segment_type() {
            9 | 11 => g.cs.dpl() == g.ss.dpl(),
            13 | 15 => g.cs.dpl() <= g.ss.dpl(),
            _ => true,
        },
    );
    rule(Rule::GuestSsDpl, g.ss.dpl() == g.ss.rpl());
    rule(
        Rule::GuestDataDpl,
        [&g.ds, &g.es, &g.fs, &g.gs]
            .iter()
            .all(|s| !s.usable() || s.segment_type() > 11 || s.dpl() >= s.rpl()),
    );
    rule(
        Rule::GuestPresent,
        g.cs.present() && usable_data.iter().all(|s| !s.usable() || s.present()),
    );
    let reserved = |s: &Segment| s.access_rights & 0xfffe_0f00 == 0;
    rule(
        Rule::GuestAccessRightsReserved,
        reserved(&g.cs) && usable_data.iter().all(|s| !s.usable() || reserved(s)),
    );
    let granular = |s: &Segment| {
        (s.limit & 0xfff == 0xfff || !s.granularity())
            && (s.limit & 0xfff0_0000 == 0 || s.granularity())
    };
    rule(
        Rule::GuestLimitGranularity,
        granular(&g.cs)
            && granular(&g.tr)
            && usable_data
                .iter()
                .chain([&&g.ldtr])
                .all(|s| !s.usable() || granular(s)),
    );
    rule(
        Rule::GuestCsLongAndD,
        !(ia32e_guest && g.cs.long() && g.cs.default_big()),
    );
    rule(
        Rule::GuestTrType,
        (if ia32e_guest {
            g.tr.segment_type() == 11
        } else {
            matches!(g.tr.segment_type(), 3 | 11)
        }) && !g.tr.s()
            && g.tr.present()
            && reserved(&g.tr)
            && g.tr.usable(),
    );
    rule(
        Rule::GuestLdtrType,
        !g.ldtr.usable()
            || (g.ldtr.segment_type() == 2 && !g.ldtr.s() && g.ldtr.present() && reserved(&g.ldtr)),
    );
    // Checks on Guest Descriptor-Table Registers.
    rule(
        Rule::GuestDescriptorTableBase,
        canonical(g.gdtr.0) && canonical(g.idtr.0),
    );
    rule(
        Rule::GuestDescriptorTableLimit,
        g.gdtr.1 >> 16 == 0 && g.idtr.1 >> 16 == 0,
    );
    // Checks on Guest RIP and RFLAGS.
    rule(
        Rule::GuestRip,
        if ia32e_guest && g.cs.long() {
            // Bits 63:N identical: canonical for N + 1 bits (no check
            // at all with 64 linear-address bits).
            is_canonical(g.rip, linear.saturating_add(1))
        } else {
            g.rip >> 32 == 0
        },
    );
    rule(
        Rule::GuestRflagsReserved,
        g.rflags & 0xffff_ffff_ffc0_8028 == 0 && g.rflags & 2 != 0,
    );
    rule(
        Rule::GuestRflagsVm,
        g.rflags & RFLAGS_VM == 0 || (!ia32e_guest && g.cr0 & CR0_PE != 0),
    );
    // Checks on Guest Non-Register State.
    let supported_states = (capabilities.misc >> 6) & 0x7;
    rule(
        Rule::GuestActivityState,
        g.activity_state == 0
            || (g.activity_state <= 3 && supported_states & (1 << (g.activity_state - 1)) != 0),
    );
    rule(
        Rule::GuestHltNeedsSsDpl0,
        g.activity_state != 1 || g.ss.dpl() == 0,
    );
    rule(
        Rule::GuestActivityNeedsNoBlocking,
        g.activity_state == 0 || g.interruptibility & 3 == 0,
    );
    rule(
        Rule::GuestInterruptibilityReserved,
        g.interruptibility & !0x1f == 0 && g.interruptibility & 3 != 3,
    );
    rule(
        Rule::GuestStiBlockingNeedsIf,
        g.interruptibility & 1 == 0 || g.rflags & (1 << 9) != 0,
    );
    // vmx-core runs outside SMM.
    rule(
        Rule::GuestSmiBlocking,
        g.interruptibility & (1 << 2) == 0 && c.entry & controls::entry::ENTRY_TO_SMM == 0,
    );
    rule(
        Rule::GuestPendingDebugReserved,
        g.pending_debug_exceptions & 0xffff_ffff_fffe_aff0 == 0,
    );
    rule(
        Rule::GuestVmcsLinkPointer,
        g.vmcs_link_pointer == u64::MAX
            || (g.vmcs_link_pointer & 0xfff == 0 && within_width(g.vmcs_link_pointer)),
    );
    failed
}

/// The rules [`break_rule`] knows how to break, each by changing one field
/// of a VMCS that breaks none.
pub const BREAKABLE: [Rule; 48] = [
    Rule::PinBasedReserved,
    Rule::PrimaryReserved,
    Rule::ExitReserved,
    Rule::EntryReserved,
    Rule::Cr3TargetCount,
    Rule::VirtualNmisNeedNmiExiting,
    Rule::NmiWindowNeedsVirtualNmis,
    Rule::SavePreemptionTimerNeedsTimer,
    Rule::EntryInterruptionInfoReserved,
    Rule::EntryToSmmOutsideSmm,
    Rule::HostCr0Fixed,
    Rule::HostCr4Fixed,
    Rule::HostCr3Width,
    Rule::HostSysenterCanonical,
    Rule::HostSelectorRplTi,
    Rule::HostCsTrNotNull,
    Rule::HostBasesCanonical,
    Rule::GuestCr0Fixed,
    Rule::GuestCr4Fixed,
    Rule::GuestIa32eModePaging,
    Rule::GuestCr3Width,
    Rule::GuestDr7,
    Rule::GuestSysenterCanonical,
    Rule::GuestTrTi,
    Rule::GuestSsRplCsRpl,
    Rule::GuestBaseCanonical,
    Rule::GuestBaseHigh,
    Rule::GuestCsType,
    Rule::GuestSsType,
    Rule::GuestDataType,
    Rule::GuestCodeDataS,
    Rule::GuestCsDpl,
    Rule::GuestDataDpl,
    Rule::GuestPresent,
    Rule::GuestAccessRightsReserved,
    Rule::GuestLimitGranularity,
    Rule::GuestCsLongAndD,
    Rule::GuestTrType,
    Rule::GuestLdtrType,
    Rule::GuestDescriptorTableBase,
    Rule::GuestDescriptorTableLimit,
    Rule::GuestRip,
    Rule::GuestRflagsReserved,
    Rule::GuestRflagsVm,
    Rule::GuestActivityState,
    Rule::GuestStiBlockingNeedsIf,
    Rule::GuestSmiBlocking,
    Rule::GuestVmcsLinkPointer,
];

/// The first non-canonical address of a 48-bit linear-address space.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;

/// `vmcs` changed in one field so that it breaks `rule` (and, when `vmcs`
/// is vmx-core's minimal guest on a processor with a 48-bit linear and at
/// most 52-bit physical address width, only `rule`): for tests of a
/// processor's VM-entry checks. `None` for a rule not in [`BREAKABLE`].
#[must_use]
pub fn break_rule(rule: Rule, vmcs: &VmcsDescription) -> Option<VmcsDescription> {
    let mut broken = *vmcs;
    let (v, c, g) = (&mut broken, &vmcs.controls, &vmcs.guest);
    match rule {
        // A default1 control (bits 1, 2, 4 are must-be-1 in the TRUE MSR
        // of every model so far) cleared.
        Rule::PinBasedReserved => v.controls.pin_based = c.pin_based & !(1 << 1),
        // Bit 0 of the primary controls is reserved (must be 0).
        Rule::PrimaryReserved => v.controls.primary = c.primary | 1,
        // Bit 30 of the VM-exit controls is reserved.
        Rule::ExitReserved => v.controls.exit = c.exit | 1 << 30,
        // Bit 31 of the VM-entry controls is reserved.
        Rule::EntryReserved => v.controls.entry = c.entry | 1 << 31,
        Rule::Cr3TargetCount => v.cr3_target_count = 5,
        Rule::VirtualNmisNeedNmiExiting => {
            v.controls.pin_based = c.pin_based | controls::pin::VIRTUAL_NMIS;
        }
        Rule::NmiWindowNeedsVirtualNmis => {
            v.controls.primary = c.primary | controls::primary::NMI_WINDOW_EXITING;
        }
        Rule::SavePreemptionTimerNeedsTimer => {
            v.controls.exit = c.exit | controls::exit::SAVE_PREEMPTION_TIMER;
        }
        // Valid (bit 31), with reserved bit 12 set: an external interrupt,
        // vector 0x20.
        Rule::EntryInterruptionInfoReserved => v.entry_interruption_info = 1 << 31 | 1 << 12 | 0x20,
        // "Deactivate dual-monitor treatment" outside SMM. ("Entry to SMM"
        // would also break a guest-state rule: blocking by SMI must be 1
        // then.)
        Rule::EntryToSmmOutsideSmm => {
            v.controls.entry = c.entry | controls::entry::DEACTIVATE_DUAL_MONITOR;
        }
        // CR0.NE, which IA32_VMX_CR0_FIXED0 requires.
        Rule::HostCr0Fixed => v.host.cr0 = vmcs.host.cr0 & !(1 << 5),
        // CR4.VMXE, which IA32_VMX_CR4_FIXED0 requires.
        Rule::HostCr4Fixed => v.host.cr4 = vmcs.host.cr4 & !(1 << 13),
        // Bit 52 is beyond every physical-address width so far.
        Rule::HostCr3Width => v.host.cr3 = vmcs.host.cr3 | 1 << 52,
        Rule::HostSysenterCanonical => v.host.sysenter_eip = NON_CANONICAL,
        // DS with RPL 3.
        Rule::HostSelectorRplTi => v.host.selectors.ds = vmcs.host.selectors.ds | 3,
        Rule::HostCsTrNotNull => v.host.selectors.tr = 0,
        Rule::HostBasesCanonical => v.host.fs_base = NON_CANONICAL,
        Rule::GuestCr0Fixed => v.guest.cr0 = g.cr0 & !(1 << 5),
        Rule::GuestCr4Fixed => v.guest.cr4 = g.cr4 & !(1 << 13),
        // CR4.PAE clear in an IA-32e mode guest.
        Rule::GuestIa32eModePaging => v.guest.cr4 = g.cr4 & !(1 << 5),
        Rule::GuestCr3Width => v.guest.cr3 = g.cr3 | 1 << 52,
        Rule::GuestDr7 => v.guest.dr7 = g.dr7 | 1 << 32,
        Rule::GuestSysenterCanonical => v.guest.sysenter_esp = NON_CANONICAL,
        Rule::GuestTrTi => v.guest.tr.selector = g.tr.selector | 4,
        // CS with RPL 3, SS with RPL 0.
        Rule::GuestSsRplCsRpl => v.guest.cs.selector = g.cs.selector | 3,
        // FS's base, which must be canonical even while FS is unusable.
        Rule::GuestBaseCanonical => v.guest.fs.base = NON_CANONICAL,
        Rule::GuestBaseHigh => v.guest.cs.base = g.cs.base | 1 << 32,
        // Execute/read code, not accessed.
        Rule::GuestCsType => v.guest.cs.access_rights = g.cs.access_rights & !1,
        // Read-only data.
        Rule::GuestSsType => v.guest.ss.access_rights = (g.ss.access_rights & !0xf) | 1,
        // Read/write data, not accessed.
        Rule::GuestDataType => v.guest.ds.access_rights = g.ds.access_rights & !1,
        // DS a system segment (S clear).
        Rule::GuestCodeDataS => v.guest.ds.access_rights = g.ds.access_rights & !(1 << 4),
        // CS with DPL 3, SS with DPL 0.
        Rule::GuestCsDpl => v.guest.cs.access_rights = g.cs.access_rights | 3 << 5,
        // DS with RPL 3 and DPL 0.
        Rule::GuestDataDpl => v.guest.ds.selector = g.ds.selector | 3,
        Rule::GuestPresent => v.guest.ds.access_rights = g.ds.access_rights & !(1 << 7),
        Rule::GuestAccessRightsReserved => v.guest.ds.access_rights = g.ds.access_rights | 1 << 8,
        // Limit bits 31:20 set (G must be 1) and 11:0 clear (G must be 0).
        Rule::GuestLimitGranularity => v.guest.ds.limit = 0xffff_f000,
        Rule::GuestCsLongAndD => v.guest.cs.access_rights = g.cs.access_rights | 1 << 14,
        // An available (not busy) 64-bit TSS.
        Rule::GuestTrType => v.guest.tr.access_rights = (g.tr.access_rights & !0xf) | 9,
        // A usable LDTR of type 3 (not an LDT).
        Rule::GuestLdtrType => v.guest.ldtr.access_rights = 0x83,
        Rule::GuestDescriptorTableBase => v.guest.gdtr.0 = NON_CANONICAL,
        Rule::GuestDescriptorTableLimit => v.guest.gdtr.1 = 0x1_0000,
        // Bit 48 set and bits 63:49 clear: bits 63:48 not identical (a
        // non-canonical RIP with bits 63:48 equal passes the rule).
        Rule::GuestRip => v.guest.rip = 1 << 48,
        // Bit 1 of RFLAGS, which is always 1, cleared.
        Rule::GuestRflagsReserved => v.guest.rflags = g.rflags & !2,
        // RFLAGS.VM in an IA-32e mode guest.
        Rule::GuestRflagsVm => v.guest.rflags = g.rflags | 1 << 17,
        Rule::GuestActivityState => v.guest.activity_state = 5,
        // Blocking by STI with RFLAGS.IF clear (the minimal guest's).
        Rule::GuestStiBlockingNeedsIf => v.guest.interruptibility = g.interruptibility | 1,
        // Blocking by SMI outside SMM.
        Rule::GuestSmiBlocking => v.guest.interruptibility = g.interruptibility | 1 << 2,
        // Not all ones, and not 4 KiB aligned.
        Rule::GuestVmcsLinkPointer => v.guest.vmcs_link_pointer = 0x1,
        _ => return None,
    }
    Some(broken)
}

/// The controls' allowed settings of Bochs' corei7_skylake_x as read from
/// its capability MSRs (an e2e `vmx-dump/1` of Bochs 2.7), for tests.
#[cfg(test)]
pub(crate) fn skylake_capabilities() -> EntryCapabilities {
    use crate::capabilities::ControlMsr;
    let with_true = |msr, true_msr| {
        AllowedSettings::new(
            ControlMsr::from_raw(msr),
            Some(ControlMsr::from_raw(true_msr)),
        )
    };
    EntryCapabilities {
        controls: ControlCapabilities {
            pin_based: with_true(0x7f_0000_0016, 0x7f_0000_0016),
            primary: with_true(0xf7f9_fffe_0401_e172, 0xf7f9_fffe_0400_6172),
            secondary: AllowedSettings::new(ControlMsr::from_raw(0x0217_7fff_0000_0000), None),
            exit: with_true(0x7f_ffff_0003_6dff, 0x7f_ffff_0003_6dfb),
            entry: with_true(0xffff_0000_11ff, 0xffff_0000_11fb),
        },
        cr0_fixed: FixedBits::new(0x8000_0021, 0xffff_ffff),
        cr4_fixed: FixedBits::new(0x2000, 0x0037_27ff),
        misc: 0x6004_01e0,
        physical_address_width: 39,
        linear_address_width: 48,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::Controls;
    use crate::cpu::{DescriptorTable, SegmentSelectors};
    use crate::state::{GuestState, HostState};

    /// The host as the e2e kernel has it on Bochs after VMXON.
    pub(crate) fn host() -> HostState {
        HostState {
            cr0: 0x8000_0031,
            cr3: 0x10_2000,
            cr4: 0x2020,
            selectors: SegmentSelectors {
                cs: 0x08,
                ss: 0x10,
                ds: 0x10,
                es: 0x10,
                fs: 0,
                gs: 0,
                tr: 0x20,
            },
            tr_base: 0x11_0000,
            gdtr: DescriptorTable {
                base: 0x10_1000,
                limit: 0x127,
            },
            idtr: DescriptorTable {
                base: 0x10_3000,
                limit: 0xfff,
            },
            efer: 0x500,
            pat: 0x0007_0406_0007_0406,
            ..HostState::default()
        }
    }

    fn minimal() -> VmcsDescription {
        let caps = skylake_capabilities();
        let host = host();
        VmcsDescription {
            controls: Controls::compute(&caps.controls, VmcsDescription::minimal_requests())
                .unwrap(),
            exception_bitmap: VmcsDescription::ALL_EXCEPTIONS,
            cr3_target_count: 0,
            entry_interruption_info: 0,
            guest: GuestState::minimal_64bit(&host, 0x10_4000, 0x10_8000),
            host,
        }
    }

    #[test]
    fn the_minimal_guest_passes_every_rule() {
        let vmcs = minimal();
        let failed = check(&vmcs, &skylake_capabilities());
        assert!(
            failed.is_empty(),
            "{:?}",
            failed.iter().collect::<std::vec::Vec<_>>()
        );
        assert_eq!(failed.failure(), None);
    }

    #[test]
    fn every_broken_field_names_its_rule_and_only_it() {
        let caps = skylake_capabilities();
        type Breaks = fn(&mut VmcsDescription);
        let cases: [(Rule, Breaks); 14] = [
            (Rule::PinBasedReserved, |v| v.controls.pin_based &= !0x16),
            (Rule::PrimaryReserved, |v| v.controls.primary |= 1),
            (Rule::ExitReserved, |v| v.controls.exit |= 1 << 31),
            (Rule::EntryReserved, |v| v.controls.entry |= 1 << 31),
            (Rule::Cr3TargetCount, |v| v.cr3_target_count = 5),
            (Rule::HostCr0Fixed, |v| v.host.cr0 &= !(1 << 5)),
            (Rule::HostCsTrNotNull, |v| v.host.selectors.tr = 0),
            (Rule::HostSelectorRplTi, |v| v.host.selectors.ds = 0x13),
            (Rule::GuestCr0Fixed, |v| v.guest.cr0 &= !(1 << 5)),
            (Rule::GuestRflagsReserved, |v| v.guest.rflags = 0),
            (Rule::GuestVmcsLinkPointer, |v| {
                v.guest.vmcs_link_pointer = 0x1
            }),
            (Rule::GuestCsLongAndD, |v| {
                v.guest.cs.access_rights |= 1 << 14
            }),
            (Rule::GuestTrType, |v| v.guest.tr.access_rights = 0x89),
            (Rule::GuestActivityState, |v| v.guest.activity_state = 5),
        ];
        for (rule, breaks) in cases {
            let mut vmcs = minimal();
            breaks(&mut vmcs);
            let failed = check(&vmcs, &caps);
            assert_eq!(
                failed.iter().collect::<std::vec::Vec<_>>(),
                [rule],
                "{rule:?}"
            );
            assert_eq!(failed.failure(), Some(rule.failure()));
        }
    }

    #[test]
    fn every_breakable_rule_breaks_alone_in_one_field() {
        let caps = skylake_capabilities();
        let vmcs = minimal();
        for &rule in &BREAKABLE {
            let broken = break_rule(rule, &vmcs).unwrap();
            let failed = check(&broken, &caps);
            assert_eq!(
                failed.iter().collect::<std::vec::Vec<_>>(),
                [rule],
                "{rule:?}"
            );
            assert!(vmcs.differing_field(&broken).is_some(), "{rule:?}");
        }
        assert_eq!(break_rule(Rule::HostSsNotNull, &vmcs), None);
    }

    #[test]
    fn several_broken_rules_are_all_named_and_the_controls_decide_the_failure() {
        let mut vmcs = minimal();
        vmcs.guest.rflags = 0;
        vmcs.host.selectors.cs = 0;
        vmcs.controls.entry |= 1 << 31;
        let failed = check(&vmcs, &skylake_capabilities());
        assert_eq!(
            failed.iter().collect::<std::vec::Vec<_>>(),
            [
                Rule::EntryReserved,
                Rule::HostCsTrNotNull,
                Rule::GuestRflagsReserved
            ]
        );
        assert_eq!(
            failed.failure(),
            Some(EntryFailure::VmFailValid(
                VmInstructionError::EntryInvalidControlFields
            ))
        );
        assert_eq!(
            failed.without(Rule::EntryReserved).failure(),
            Some(EntryFailure::VmFailValid(
                VmInstructionError::EntryInvalidHostStateFields
            ))
        );
    }

    #[test]
    fn rules_have_names_sections_and_failures() {
        assert_eq!(Rule::GuestVmcsLinkPointer.name(), "guest-vmcs-link-pointer");
        assert_eq!(
            Rule::from_name("host-cs-tr-not-null"),
            Some(Rule::HostCsTrNotNull)
        );
        assert_eq!(Rule::from_name("nonsense"), None);
        assert_eq!(
            Rule::HostCsTrNotNull.section(),
            "Checks on Host Segment and Descriptor-Table Registers"
        );
        let text = std::format!("{}", Rule::GuestRflagsReserved);
        assert!(
            text.starts_with("SDM \"Checks on Guest RIP and RFLAGS\": RFLAGS"),
            "{text}"
        );
        assert_eq!(
            Rule::GuestVmcsLinkPointer.failure(),
            EntryFailure::ExitReason {
                reason: BasicExitReason::InvalidGuestState,
                qualification: 4
            }
        );
        let mut names: std::vec::Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
    }

    #[test]
    fn the_book_lists_every_rule_and_the_ones_tried_on_bochs() {
        let book = include_str!("../../docs/src/vmcs.md");
        for &rule in Rule::ALL {
            let row = book
                .lines()
                .find(|line| line.starts_with(&std::format!("| `{}` |", rule.name())))
                .unwrap_or_else(|| panic!("docs/src/vmcs.md has no row for {}", rule.name()));
            assert!(row.contains(rule.section()), "{row}");
            // The last cell, the Bochs column, is filled exactly for the
            // rules the e2e suite breaks there.
            let bochs = row
                .trim_end_matches('|')
                .rsplit('|')
                .next()
                .unwrap_or("")
                .trim();
            assert_eq!(!bochs.is_empty(), BREAKABLE.contains(&rule), "{row}");
        }
    }

    #[test]
    fn the_guest_rip_rule_wants_bits_63_to_n_identical_not_a_canonical_rip() {
        // "Checks on Guest RIP and RFLAGS": with N linear-address bits,
        // "bits 63:N must be identical" in 64-bit code. With N = 48, RIP
        // 0x0000_8000_0000_0000 passes (bits 63:48 all 0) although it is
        // not canonical: VM entry succeeds and the first fetch faults.
        let caps = skylake_capabilities();
        let mut vmcs = minimal();
        for rip in [
            0x0000_8000_0000_0000,
            0xffff_7fff_ffff_ffff,
            0x0000_ffff_ffff_ffff,
            0xffff_0000_0000_0000,
        ] {
            vmcs.guest.rip = rip;
            assert!(check(&vmcs, &caps).is_empty(), "{rip:#x}");
        }
        for rip in [0x0001_0000_0000_0000, 0xfffe_ffff_ffff_ffff, 1 << 63] {
            vmcs.guest.rip = rip;
            let failed = check(&vmcs, &caps);
            assert_eq!(
                failed.iter().collect::<std::vec::Vec<_>>(),
                [Rule::GuestRip],
                "{rip:#x}"
            );
        }
        // With 64 linear-address bits no check applies.
        let wide = EntryCapabilities {
            linear_address_width: 64,
            ..caps
        };
        vmcs.guest.rip = 1 << 63;
        assert!(!check(&vmcs, &wide).contains(Rule::GuestRip));
    }

    #[test]
    fn the_guest_cr0_rule_never_checks_nw_and_cd() {
        // "Checks on Guest Control Registers, Debug Registers, and MSRs":
        // bits 29 (NW) and 30 (CD) of the guest CR0 field are never
        // checked against the fixed bits (VM entry does not load them);
        // the host's CR0 field has no such exception.
        let nw_cd = (1u64 << 29) | (1 << 30);
        for (fixed0, fixed1) in [
            (0x8000_0021 | nw_cd, 0xffff_ffff),
            (0x8000_0021, 0xffff_ffff & !nw_cd),
        ] {
            let caps = EntryCapabilities {
                cr0_fixed: FixedBits::new(fixed0, fixed1),
                ..skylake_capabilities()
            };
            let mut vmcs = minimal();
            vmcs.guest.cr0 = if fixed1 & nw_cd == 0 {
                vmcs.guest.cr0 | nw_cd
            } else {
                vmcs.guest.cr0 & !nw_cd
            };
            vmcs.host.cr0 = (vmcs.host.cr0 | fixed0) & fixed1;
            let failed = check(&vmcs, &caps);
            assert!(
                failed.is_empty(),
                "{fixed0:#x}/{fixed1:#x}: {:?}",
                failed.iter().collect::<std::vec::Vec<_>>()
            );
            // Every other bit is still checked.
            vmcs.guest.cr0 &= !(1 << 5);
            assert!(check(&vmcs, &caps).contains(Rule::GuestCr0Fixed));
            // And the host's NW and CD are.
            let mut host = vmcs;
            host.guest.cr0 |= 1 << 5;
            assert!(check(&host, &caps).is_empty());
            host.host.cr0 ^= nw_cd;
            assert!(check(&host, &caps).contains(Rule::HostCr0Fixed));
        }
    }

    #[test]
    fn a_physical_address_width_of_64_or_more_never_panics() {
        // CPUID.80000008H:EAX[7:0] is a byte: a (nested) hypervisor can
        // report 64 or more. Every address then fits the width.
        for width in [64, 65, 255] {
            let caps = EntryCapabilities {
                physical_address_width: width,
                ..skylake_capabilities()
            };
            let mut vmcs = minimal();
            vmcs.guest.vmcs_link_pointer = 0x8000_0000_0000_0000;
            vmcs.host.cr3 = 0x8000_0000_0010_2000;
            vmcs.guest.cr3 = 0x8000_0000_0010_2000;
            assert!(check(&vmcs, &caps).is_empty(), "width {width}");
        }
    }

    #[test]
    fn efer_bits_12_to_15_are_reserved_on_intel() {
        // SDM Vol. 4, IA32_EFER: bit 0 SCE, 8 LME, 10 LMA, 11 NXE; bits 7:1,
        // 9 and 63:12 are reserved. (SVME, LMSLE, FFXSR and TCE at 15:12
        // are AMD's.) With the "load IA32_EFER" controls set, each such
        // bit fails the host and the guest EFER rules.
        for bit in [1, 9, 12, 13, 14, 15, 16, 63] {
            let mut vmcs = minimal();
            vmcs.controls.exit |= controls::exit::LOAD_EFER;
            vmcs.controls.entry |= controls::entry::LOAD_EFER;
            assert!(check(&vmcs, &skylake_capabilities()).is_empty());
            vmcs.host.efer |= 1 << bit;
            vmcs.guest.efer |= 1 << bit;
            let failed = check(&vmcs, &skylake_capabilities());
            assert!(failed.contains(Rule::HostEfer), "bit {bit}");
            assert!(failed.contains(Rule::GuestEfer), "bit {bit}");
        }
        let mut vmcs = minimal();
        vmcs.controls.exit |= controls::exit::LOAD_EFER;
        vmcs.controls.entry |= controls::entry::LOAD_EFER;
        vmcs.host.efer = 0xd01;
        vmcs.guest.efer = 0xd01;
        assert!(check(&vmcs, &skylake_capabilities()).is_empty());
    }

    #[test]
    fn canonical_and_pat_helpers_follow_the_sdm() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff, 48));
        assert!(is_canonical(0xffff_8000_0000_0000, 48));
        assert!(!is_canonical(0x0000_8000_0000_0000, 48));
        assert!(is_canonical(0x00ff_8000_0000_0000, 57));
        // A nonsense width never panics.
        assert!(is_canonical(0x0000_8000_0000_0000, 0));
        assert!(is_canonical(0x0000_8000_0000_0000, 200));
        assert!(is_valid_pat(0x0007_0406_0007_0406));
        assert!(!is_valid_pat(0x0007_0406_0007_0402));
    }
}
