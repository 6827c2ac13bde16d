//! Fault injection for end-to-end tests on real or emulated processors: a
//! [`Cpu`] wrapper that makes one step go wrong the way a broken platform
//! would, or hides one fact from one of vmx-core's checks, so that the
//! processor's own reaction (#UD, #GP, VMfailInvalid, VMfailValid) and
//! vmx-core's reading of it and rollback can be observed. Each injection
//! bypasses at most one check: the instruction that check protects then
//! really executes. Nothing here is used on a normal path; a front end
//! enables it only when a test asks.

use crate::cpu::{Cpu, CpuidResult, DescriptorTables, Fault, GuestRegisters, SegmentSelectors};
use crate::cpuid::{CpuIdentity, DEFAULT_PHYSICAL_ADDRESS_WIDTH};
use crate::feature_control::{FeatureControlFlags, IA32_FEATURE_CONTROL};
use crate::fixed_bits::{CR0_NE, CR4_VMXE};
use crate::instruction::VmxOutcome;
use crate::vmx_basic::IA32_VMX_BASIC;

/// Which step to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Injection {
    /// Nothing: the wrapper passes every operation through.
    #[default]
    None,
    /// IA32_VMX_BASIC reads with a different revision identifier, so the
    /// VMXON region carries a wrong one: VMXON must fail with
    /// VMfailInvalid.
    WrongRevisionId,
    /// Writes to CR4 drop VMXE, so VMXON runs with CR4.VMXE clear: VMXON
    /// must raise #UD.
    DropVmxe,
    /// Writes to CR0 drop NE, so VMXON runs with a CR0 bit clear that
    /// IA32_VMX_CR0_FIXED0 requires: VMXON must raise #GP. (Bypasses the
    /// fixed-bit adjustment.)
    DropCr0Ne,
    /// IA32_FEATURE_CONTROL reads as locked with VMX enabled outside SMX
    /// (its other bits as they are) while it is not: VMXON must raise #GP.
    /// (Bypasses the feature-control check and the lock on first use.)
    FeatureControlReadsEnabled,
    /// Writes to IA32_FEATURE_CONTROL keep only the lock bit, the mistake
    /// of a well-known tutorial: VMX is locked off until reset. vmx-core's
    /// read-back must catch it; any later WRMSR to the MSR raises #GP.
    LockAlone,
    /// Writes to IA32_FEATURE_CONTROL lose the lock bit: VMX stays enabled
    /// but unlocked. vmx-core's read-back must catch it; VMXON past that
    /// check raises #GP.
    DropLock,
    /// VMXON's operand is the region's address plus one: VMXON must fail
    /// with VMfailInvalid. (Bypasses the alignment check.)
    MisalignVmxon,
    /// VMXON's operand gets the first bit beyond the physical-address width
    /// (`CPUID.80000008H:EAX[7:0]`) set: VMXON must fail with
    /// VMfailInvalid. (Bypasses the address-width check.)
    VmxonBeyondWidth,
    /// Reads of CR4 show VMXE clear, and writes keep VMXE as the processor
    /// has it: vmx-core cannot see that VMX is in use, so VMXON runs in VMX
    /// root operation. (Bypasses the CR4.VMXE-in-use check.)
    HideVmxe,
    /// Before vmx-core's VMXOFF, the wrapper executes one of its own:
    /// something else left VMX operation first, and vmx-core's VMXOFF must
    /// raise #UD. (Bypasses vmx-core's record of being in VMX operation.)
    LeaveFirst,
    /// VMCLEAR's operand is replaced by this physical address (the
    /// processor's VMXON region, say: VMCLEAR must fail with VMfailValid,
    /// error 3). (Bypasses the check that a VMCS is not the VMXON region.)
    RedirectVmclear(u64),
    /// VMWRITE of the VMCS field with encoding `field` writes `value`
    /// instead of what vmx-core asked for: a VMCS that breaks one VM-entry
    /// rule reaches VMLAUNCH although vmx-core's checks saw a valid one, so
    /// that the processor's own verdict shows. (Bypasses
    /// [`entry_checks::check`](crate::entry_checks::check).)
    OverrideField {
        /// The field's encoding.
        field: u32,
        /// The value written instead.
        value: u64,
    },
}

impl Injection {
    /// The injections [`Injection::from_name`] parses: every one without a
    /// value.
    pub const NAMED: [Self; 11] = [
        Self::None,
        Self::WrongRevisionId,
        Self::DropVmxe,
        Self::DropCr0Ne,
        Self::FeatureControlReadsEnabled,
        Self::LockAlone,
        Self::DropLock,
        Self::MisalignVmxon,
        Self::VmxonBeyondWidth,
        Self::HideVmxe,
        Self::LeaveFirst,
    ];

    /// Parses the names used on command lines (see [`Injection::name`]);
    /// [`Injection::RedirectVmclear`] takes an address and has no name to
    /// parse.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED
            .into_iter()
            .find(|injection| injection.name() == name)
    }

    /// The injection's name: `none`, `wrong-revision-id`, `drop-vmxe`,
    /// `drop-cr0-ne`, `feature-control-reads-enabled`, `lock-alone`,
    /// `drop-lock`,
    /// `misalign-vmxon`, `vmxon-beyond-width`, `hide-vmxe`, `leave-first`,
    /// `redirect-vmclear`, `override-field`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::WrongRevisionId => "wrong-revision-id",
            Self::DropVmxe => "drop-vmxe",
            Self::DropCr0Ne => "drop-cr0-ne",
            Self::FeatureControlReadsEnabled => "feature-control-reads-enabled",
            Self::LockAlone => "lock-alone",
            Self::DropLock => "drop-lock",
            Self::MisalignVmxon => "misalign-vmxon",
            Self::VmxonBeyondWidth => "vmxon-beyond-width",
            Self::HideVmxe => "hide-vmxe",
            Self::LeaveFirst => "leave-first",
            Self::RedirectVmclear(_) => "redirect-vmclear",
            Self::OverrideField { .. } => "override-field",
        }
    }
}

/// A [`Cpu`] that applies an [`Injection`] to another.
#[derive(Debug)]
pub struct Injecting<C> {
    inner: C,
    injection: Injection,
}

impl<C: Cpu> Injecting<C> {
    /// Wraps `inner`.
    pub const fn new(inner: C, injection: Injection) -> Self {
        Self { inner, injection }
    }

    /// The wrapped CPU.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// The first physical-address bit beyond the width vmx-core decides
    /// with ([`CpuIdentity`]: the processor's report, or the default width
    /// when it reports none or 0); 0 when no bit lies beyond it.
    fn first_bit_beyond_width(&mut self) -> u64 {
        let inner = &mut self.inner;
        let width = CpuIdentity::read(|leaf, subleaf| Some(inner.cpuid(leaf, subleaf)))
            .map_or(DEFAULT_PHYSICAL_ADDRESS_WIDTH, |identity| {
                identity.physical_address_width
            });
        1u64.checked_shl(u32::from(width)).unwrap_or(0)
    }
}

impl<C: Cpu> Cpu for Injecting<C> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.inner.cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        let value = self.inner.read_msr(msr)?;
        match self.injection {
            // Flip a bit of the revision identifier (bits 30:0), keep the rest.
            Injection::WrongRevisionId if msr == IA32_VMX_BASIC => Ok(value ^ 0x4000_0000),
            Injection::FeatureControlReadsEnabled if msr == IA32_FEATURE_CONTROL => Ok(value
                | FeatureControlFlags::LOCK.bits()
                | FeatureControlFlags::VMX_OUTSIDE_SMX.bits()),
            _ => Ok(value),
        }
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        let value = match self.injection {
            Injection::LockAlone if msr == IA32_FEATURE_CONTROL => {
                value & FeatureControlFlags::LOCK.bits()
            }
            Injection::DropLock if msr == IA32_FEATURE_CONTROL => {
                value & !FeatureControlFlags::LOCK.bits()
            }
            _ => value,
        };
        self.inner.write_msr(msr, value)
    }

    fn read_cr0(&mut self) -> u64 {
        self.inner.read_cr0()
    }

    fn write_cr0(&mut self, value: u64) {
        let value = if self.injection == Injection::DropCr0Ne {
            value & !CR0_NE
        } else {
            value
        };
        self.inner.write_cr0(value);
    }

    fn read_cr4(&mut self) -> u64 {
        let value = self.inner.read_cr4();
        if self.injection == Injection::HideVmxe {
            value & !CR4_VMXE
        } else {
            value
        }
    }

    fn write_cr4(&mut self, value: u64) {
        let value = match self.injection {
            Injection::DropVmxe => value & !CR4_VMXE,
            Injection::HideVmxe => (value & !CR4_VMXE) | (self.inner.read_cr4() & CR4_VMXE),
            _ => value,
        };
        self.inner.write_cr4(value);
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        let region = match self.injection {
            Injection::MisalignVmxon => region + 1,
            Injection::VmxonBeyondWidth => region | self.first_bit_beyond_width(),
            _ => region,
        };
        self.inner.vmxon(region)
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        if self.injection == Injection::LeaveFirst {
            // Something else leaves VMX operation first; what it got does
            // not matter, vmx-core's own VMXOFF below is the one observed.
            let _ = self.inner.vmxoff();
        }
        self.inner.vmxoff()
    }

    fn vmclear(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        match self.injection {
            Injection::RedirectVmclear(to) => self.inner.vmclear(to),
            _ => self.inner.vmclear(region),
        }
    }

    fn vmptrld(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.inner.vmptrld(region)
    }

    fn read_cr3(&mut self) -> u64 {
        self.inner.read_cr3()
    }

    fn read_segment_selectors(&mut self) -> SegmentSelectors {
        self.inner.read_segment_selectors()
    }

    fn read_descriptor_tables(&mut self) -> DescriptorTables {
        self.inner.read_descriptor_tables()
    }

    fn read_tr_base(&mut self) -> u64 {
        self.inner.read_tr_base()
    }

    fn vmwrite(&mut self, field: u32, value: u64) -> Result<VmxOutcome, Fault> {
        match self.injection {
            Injection::OverrideField { field: f, value } if f == field => {
                self.inner.vmwrite(field, value)
            }
            _ => self.inner.vmwrite(field, value),
        }
    }

    fn vmread(&mut self, field: u32) -> Result<(VmxOutcome, u64), Fault> {
        self.inner.vmread(field)
    }

    fn vmlaunch(&mut self, registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault> {
        self.inner.vmlaunch(registers)
    }

    fn vmresume(&mut self, registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault> {
        self.inner.vmresume(registers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Instruction};
    use crate::instruction::VmInstructionError;
    use crate::operation::{Processor, ProcessorStatus};
    use crate::sim::{GRUB_CR0, GRUB_CR4, Op, SimCpu, SimPage};
    use crate::vmcs::Vmcs;

    fn vmxon_fault(fault: Fault) -> Error {
        Error::Faulted {
            instruction: Instruction::Vmxon,
            fault,
        }
    }

    /// Enters with `injection` on a fresh simulated processor; returns the
    /// error and the processor.
    fn enter_with(cpu: SimCpu, injection: Injection) -> (Error, SimCpu) {
        let mut cpu = Injecting::new(cpu, injection);
        let failure = Processor::new()
            .enter(&mut cpu, SimPage::new(0x1000))
            .unwrap_err();
        (failure.error, cpu.into_inner())
    }

    #[test]
    fn every_named_injection_round_trips_and_the_valued_one_is_not_parsed() {
        for injection in Injection::NAMED {
            assert_eq!(Injection::from_name(injection.name()), Some(injection));
        }
        assert_eq!(Injection::from_name("redirect-vmclear"), None);
        assert_eq!(Injection::from_name("override-field"), None);
        assert_eq!(Injection::from_name("bogus"), None);
    }

    #[test]
    fn a_dropped_cr0_ne_makes_vmxon_raise_gp_and_everything_is_put_back() {
        let (error, sim) = enter_with(SimCpu::skylake(), Injection::DropCr0Ne);
        assert_eq!(error, vmxon_fault(Fault::GeneralProtection));
        assert_eq!(sim.count(Op::Vmxon), 1);
        assert!(sim.is_pristine(), "{sim:?}");
    }

    #[test]
    fn feature_control_reading_enabled_while_unlocked_makes_vmxon_raise_gp() {
        let mut unlocked = SimCpu::skylake();
        unlocked.feature_control = 0;
        let (error, sim) = enter_with(unlocked, Injection::FeatureControlReadsEnabled);
        assert_eq!(error, vmxon_fault(Fault::GeneralProtection));
        assert_eq!(sim.count(Op::WriteMsr(IA32_FEATURE_CONTROL)), 0);
        assert_eq!(sim.feature_control, 0, "still unlocked, nothing written");
        assert!(sim.is_pristine(), "{sim:?}");
    }

    #[test]
    fn a_lock_bit_written_alone_is_caught_by_the_read_back_and_locks_vmx_off() {
        let mut unlocked = SimCpu::skylake();
        unlocked.feature_control = 0;
        let (error, sim) = enter_with(unlocked, Injection::LockAlone);
        assert_eq!(
            error,
            Error::FeatureControlNotLocked {
                written: 0x5,
                read: 0x1
            }
        );
        assert_eq!(sim.count(Op::Vmxon), 0);
        assert_eq!((sim.cr0, sim.cr4), (GRUB_CR0, GRUB_CR4));
        assert_eq!(
            sim.violations,
            ["IA32_FEATURE_CONTROL locked without enabling VMX"]
        );
        // Locked with VMX off: entering is refused from now on, and VMXON
        // past the check raises #GP.
        let (error, sim) = enter_with(sim.clone(), Injection::None);
        assert_eq!(error, Error::DisabledByFirmware { msr: 0x1 });
        let (error, mut sim) = enter_with(sim, Injection::FeatureControlReadsEnabled);
        assert_eq!(error, vmxon_fault(Fault::GeneralProtection));
        assert_eq!(
            sim.write_msr(IA32_FEATURE_CONTROL, 0x5),
            Err(Fault::GeneralProtection)
        );
    }

    #[test]
    fn a_lock_that_loses_its_bit_is_caught_and_vmxon_unlocked_raises_gp() {
        let mut unlocked = SimCpu::skylake();
        unlocked.feature_control = 0;
        let (error, sim) = enter_with(unlocked, Injection::DropLock);
        assert_eq!(
            error,
            Error::FeatureControlNotLocked {
                written: 0x5,
                read: 0x4
            }
        );
        assert_eq!(sim.count(Op::Vmxon), 0);
        let (error, mut sim) = enter_with(sim, Injection::FeatureControlReadsEnabled);
        assert_eq!(error, vmxon_fault(Fault::GeneralProtection));
        assert_eq!(sim.feature_control, 0x4, "enabled, never locked");
        // Still unlocked: it can be locked now.
        assert_eq!(sim.write_msr(IA32_FEATURE_CONTROL, 0x5), Ok(()));
        assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    }

    #[test]
    fn a_misaligned_or_too_wide_vmxon_operand_fails_invalid() {
        for injection in [Injection::MisalignVmxon, Injection::VmxonBeyondWidth] {
            let (error, sim) = enter_with(SimCpu::skylake(), injection);
            assert_eq!(
                error,
                Error::VmFailInvalid {
                    instruction: Instruction::Vmxon
                },
                "{injection:?}"
            );
            assert!(sim.is_pristine(), "{injection:?}: {sim:?}");
        }
        // The bit set is the first beyond the width the processor reports.
        let mut narrow = SimCpu::skylake();
        narrow.physical_address_width = 36;
        let mut cpu = Injecting::new(narrow, Injection::VmxonBeyondWidth);
        assert_eq!(cpu.first_bit_beyond_width(), 1 << 36);
        // The width vmx-core itself decides with (CpuIdentity): a leaf
        // 0x8000_0008 that reports 0 means the default width, and the bit
        // set is beyond that one, not bit 0 (which would only misalign it).
        let mut zero = SimCpu::skylake();
        zero.physical_address_width = 0;
        let mut cpu = Injecting::new(zero, Injection::VmxonBeyondWidth);
        assert_eq!(
            cpu.first_bit_beyond_width(),
            1 << crate::cpuid::DEFAULT_PHYSICAL_ADDRESS_WIDTH
        );
    }

    #[test]
    fn vmxon_in_vmx_root_fails_invalid_without_a_current_vmcs_and_valid_with_one() {
        let mut cpu = SimCpu::skylake();
        let mut owner = Processor::new();
        owner.enter(&mut cpu, SimPage::new(0x1000)).unwrap();
        let in_vmx_cr4 = cpu.cr4;

        // A second owner that cannot see CR4.VMXE.
        let mut hidden = Injecting::new(cpu, Injection::HideVmxe);
        let failure = Processor::new()
            .enter(&mut hidden, SimPage::new(0x2000))
            .unwrap_err();
        assert_eq!(
            failure.error,
            Error::VmFailInvalid {
                instruction: Instruction::Vmxon
            }
        );
        let mut cpu = hidden.into_inner();
        assert_eq!(cpu.cr4, in_vmx_cr4, "the rollback kept CR4.VMXE");
        assert!(cpu.violations.is_empty(), "{:?}", cpu.violations);

        let vmcs = Vmcs::load(&mut cpu, &owner, SimPage::new(0x3000)).unwrap();
        assert_eq!(cpu.current_vmcs, Some(0x3000));
        let mut hidden = Injecting::new(cpu, Injection::HideVmxe);
        let failure = Processor::new()
            .enter(&mut hidden, SimPage::new(0x2000))
            .unwrap_err();
        assert_eq!(
            failure.error,
            Error::VmFailValid {
                instruction: Instruction::Vmxon,
                error: VmInstructionError::VmxonInVmxRoot
            }
        );
        let mut cpu = hidden.into_inner();

        // VMCLEAR of the VMXON region: VMfailValid(3); the VMCS stays current.
        let ProcessorStatus::On { region, .. } = owner.status() else {
            panic!("not entered")
        };
        let mut redirected = Injecting::new(cpu, Injection::RedirectVmclear(region));
        let failure = vmcs.clear(&mut redirected).unwrap_err();
        assert_eq!(
            failure.error,
            Error::VmFailValid {
                instruction: Instruction::Vmclear,
                error: VmInstructionError::VmclearVmxonPointer
            }
        );
        cpu = redirected.into_inner();
        assert_eq!(cpu.current_vmcs, Some(0x3000));
        let page = failure.vmcs.clear(&mut cpu).unwrap();
        assert_eq!(page.physical_address, 0x3000);
        assert_eq!(cpu.current_vmcs, None);
        owner.leave(&mut cpu).unwrap();
        assert!(cpu.is_pristine(), "{cpu:?}");
    }

    #[test]
    fn something_else_leaving_first_makes_vmxoff_raise_ud_and_registers_come_back() {
        let mut cpu = SimCpu::skylake();
        let mut processor = Processor::new();
        processor.enter(&mut cpu, SimPage::new(0x1000)).unwrap();
        let mut cpu = Injecting::new(cpu, Injection::LeaveFirst);
        let failure = processor.leave(&mut cpu).unwrap_err();
        assert_eq!(
            failure.error,
            Error::Faulted {
                instruction: Instruction::Vmxoff,
                fault: Fault::InvalidOpcode
            }
        );
        assert!(
            failure.region.is_some(),
            "out of VMX operation: the page is free"
        );
        let sim = cpu.into_inner();
        assert_eq!(sim.count(Op::Vmxoff), 2);
        assert!(sim.is_pristine(), "{sim:?}");
    }
}
