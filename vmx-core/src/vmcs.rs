//! A VMCS region made current on a processor in VMX operation (SDM,
//! "Virtual Machine Control Structures": "Overview" and "Format of the VMCS
//! Region"; VMCLEAR and VMPTRLD in the instruction reference).
//!
//! The first instructions of the tutorial's next part: a VMCS region is
//! prepared as a VMXON region is (zeroed, revision identifier), initialised
//! with VMCLEAR (its launch state becomes "clear"), then made current with
//! VMPTRLD. Every check that VMCLEAR and VMPTRLD make of the pointer is made
//! here first, so that a failure is named in software; an instruction's own
//! failure is decoded as for VMXON.

use crate::cpu::{Cpu, GuestRegisters};
use crate::cpuid::CpuIdentity;
use crate::entry_checks::{self, EntryCapabilities};
use crate::error::{Error, Instruction, Result};
use crate::fields::{self, Field};
use crate::instruction::VmxOutcome;
use crate::operation::{Processor, ProcessorStatus};
use crate::platform::Page;
use crate::region;
use crate::state::VmcsDescription;
use crate::vm_exit::{EntryOutcome, ExitReason, VmExit};
use crate::vmx_basic::{IA32_VMX_BASIC, VmxBasic};

/// The size of the page vmx-core uses for a VMCS region. IA32_VMX_BASIC
/// reports the size the processor needs, at most 4096, the same as for the
/// VMXON region.
pub const VMCS_REGION_SIZE: usize = 4096;

/// The shadow-VMCS indicator, bit 31 of the region's first 4 bytes: clear
/// for an ordinary VMCS.
const SHADOW_VMCS_INDICATOR: u32 = 1 << 31;

/// Prepares a VMCS region: zeroed, then bits 30:0 of the first 4 bytes set
/// to the VMCS revision identifier and bit 31, the shadow-VMCS indicator,
/// clear ("Format of the VMCS Region"); bytes 4 to 7, the VMX-abort
/// indicator, stay 0.
pub fn prepare(page: &mut [u8; VMCS_REGION_SIZE], basic: VmxBasic) {
    page.fill(0);
    let header = basic.revision_id() & !SHADOW_VMCS_INDICATOR;
    page[..4].copy_from_slice(&header.to_le_bytes());
}

/// A VMCS region that is current on the processor it was loaded on. Clear
/// it ([`Vmcs::clear`]) before leaving VMX operation there: VMXOFF does not
/// write a current VMCS back to memory.
#[derive(Debug)]
pub struct Vmcs<P> {
    region: P,
    /// The launch state is "launched": the next entry is VMRESUME.
    launched: bool,
}

/// Loading failed: no VMCS of this region is current, and the page is
/// handed back for freeing.
#[derive(Debug)]
pub struct LoadFailure<P> {
    /// Why.
    pub error: Error,
    /// The page that was meant for the VMCS region.
    pub region: P,
}

/// Clearing failed: the VMCS stays current, and is handed back.
#[derive(Debug)]
pub struct ClearFailure<P> {
    /// Why.
    pub error: Error,
    /// The VMCS, still current.
    pub vmcs: Vmcs<P>,
}

impl<P: Page> Vmcs<P> {
    /// Makes `region` the current VMCS of the processor `cpu` runs on,
    /// which `processor` (vmx-core's state for it) has put in VMX
    /// operation: checks that the region is not the VMXON region, is 4 KiB
    /// aligned and within the physical-address width (VMCLEAR's and
    /// VMPTRLD's own checks), prepares it, then VMCLEAR and VMPTRLD.
    ///
    /// # Errors
    /// [`Error::NotEntered`] outside VMX operation (nothing is executed);
    /// [`Error::VmcsIsVmxonRegion`], [`Error::VmcsMisaligned`],
    /// [`Error::VmcsBeyondAddressWidth`]; a CPUID or RDMSR fault; VMCLEAR's
    /// or VMPTRLD's failure. The page comes back in the [`LoadFailure`].
    pub fn load<C: Cpu + ?Sized, Q: Page>(
        cpu: &mut C,
        processor: &Processor<Q>,
        mut region: P,
    ) -> Result<Self, LoadFailure<P>> {
        match check_and_prepare(cpu, processor, &mut region) {
            Ok(()) => Ok(Self {
                region,
                launched: false,
            }),
            Err(error) => Err(LoadFailure { error, region }),
        }
    }

    /// The region's physical address, the current-VMCS pointer.
    #[must_use]
    pub fn physical_address(&self) -> u64 {
        self.region.physical_address()
    }

    /// VMCLEAR: the VMCS's data is written to its region, its launch state
    /// becomes "clear" and it is no longer current. Returns the page for
    /// freeing.
    ///
    /// # Errors
    /// VMCLEAR's failure; the VMCS stays current and comes back in the
    /// [`ClearFailure`].
    pub fn clear<C: Cpu + ?Sized>(self, cpu: &mut C) -> Result<P, ClearFailure<P>> {
        match execute(Instruction::Vmclear, cpu.vmclear(self.physical_address())) {
            Ok(()) => Ok(self.region),
            Err(error) => Err(ClearFailure { error, vmcs: self }),
        }
    }
}

impl<P> Vmcs<P> {
    /// Whether the VMCS has been launched (a VM entry succeeded since it
    /// was loaded): the next entry is VMRESUME.
    #[must_use]
    pub const fn is_launched(&self) -> bool {
        self.launched
    }

    /// Checks `vmcs` against every VM-entry rule vmx-core implements
    /// ([`entry_checks::check`]) and, only if all hold, writes every field
    /// with VMWRITE.
    ///
    /// # Errors
    /// [`Error::EntryRulesBroken`] naming the first broken rule (nothing
    /// written; [`entry_checks::check`] lists them all); a VMWRITE failure
    /// or fault, [`Error::VmcsFieldFailed`] or [`Error::VmcsFieldFaulted`]
    /// (the fields before it are written).
    pub fn configure<C: Cpu + ?Sized>(
        &self,
        cpu: &mut C,
        vmcs: &VmcsDescription,
        capabilities: &EntryCapabilities,
    ) -> Result<()> {
        let broken = entry_checks::check(vmcs, capabilities);
        if let Some(rule) = broken.first() {
            return Err(Error::EntryRulesBroken {
                rule,
                failing: broken.len(),
            });
        }
        self.write_all(cpu, vmcs)
    }

    /// Writes every field of `vmcs` with VMWRITE, unchecked: for a test
    /// that wants the processor to judge a VMCS vmx-core would refuse.
    ///
    /// # Errors
    /// As [`Vmcs::configure`], without the checks.
    pub fn write_all<C: Cpu + ?Sized>(&self, cpu: &mut C, vmcs: &VmcsDescription) -> Result<()> {
        vmcs.fields()
            .try_for_each(|(field, value)| self.write(cpu, field, value))
    }

    /// VMWRITE of one field.
    ///
    /// # Errors
    /// [`Error::VmcsFieldFailed`] or [`Error::VmcsFieldFaulted`].
    pub fn write<C: Cpu + ?Sized>(&self, cpu: &mut C, field: Field, value: u64) -> Result<()> {
        match cpu.vmwrite(field.encoding(), value) {
            Ok(VmxOutcome::Succeed) => Ok(()),
            Ok(outcome) => Err(Error::VmcsFieldFailed {
                field,
                write: true,
                outcome,
            }),
            Err(fault) => Err(Error::VmcsFieldFaulted {
                field,
                write: true,
                fault,
            }),
        }
    }

    /// VMREAD of one field.
    ///
    /// # Errors
    /// [`Error::VmcsFieldFailed`] or [`Error::VmcsFieldFaulted`].
    pub fn read<C: Cpu + ?Sized>(&self, cpu: &mut C, field: Field) -> Result<u64> {
        read_field(cpu, field)
    }

    /// `written` as this VMCS holds it, read back with VMREAD
    /// ([`VmcsDescription::read`]): after a VM-entry failure,
    /// [`entry_checks::check`] of it names the rules the processor's copy
    /// breaks, whatever was meant to be written.
    ///
    /// # Errors
    /// A VMREAD that fails or faults.
    pub fn read_description<C: Cpu + ?Sized>(
        &self,
        cpu: &mut C,
        written: &VmcsDescription,
    ) -> Result<VmcsDescription> {
        VmcsDescription::read(cpu, written)
    }

    /// Enters the guest: VMLAUNCH the first time, VMRESUME once a VM entry
    /// has succeeded, with the guest's general registers in `registers`
    /// (saved there again at the VM exit). Decodes what happened: the
    /// instruction's VMfail, a VM-entry failure (exit reason bit 31, with
    /// its qualification), or a VM exit with its basic reason, qualification,
    /// instruction length and guest RIP, read with VMREAD.
    ///
    /// # Errors
    /// [`Error::EntryFaulted`] when VMLAUNCH or VMRESUME raised an
    /// exception; a VMREAD failure after a VM exit.
    pub fn enter<C: Cpu + ?Sized>(
        &mut self,
        cpu: &mut C,
        registers: &mut GuestRegisters,
    ) -> Result<EntryOutcome> {
        let resume = self.launched;
        let result = if resume {
            cpu.vmresume(registers)
        } else {
            cpu.vmlaunch(registers)
        };
        match result {
            Err(fault) => Err(Error::EntryFaulted { resume, fault }),
            Ok(VmxOutcome::FailInvalid) => Ok(EntryOutcome::FailInvalid),
            Ok(VmxOutcome::FailValid(error)) => Ok(EntryOutcome::FailValid(error)),
            Ok(VmxOutcome::Succeed) => {
                let reason = ExitReason::from_raw(read_field(cpu, fields::VM_EXIT_REASON)? as u32);
                let qualification = read_field(cpu, fields::EXIT_QUALIFICATION)?;
                if reason.entry_failure() {
                    return Ok(EntryOutcome::EntryFailure {
                        reason: reason.basic(),
                        qualification,
                    });
                }
                self.launched = true;
                Ok(EntryOutcome::Exit(VmExit {
                    reason: reason.basic(),
                    qualification,
                    instruction_length: read_field(cpu, fields::VM_EXIT_INSTRUCTION_LEN)? as u32,
                    guest_rip: read_field(cpu, fields::GUEST_RIP)?,
                }))
            }
        }
    }

    /// After a VM exit caused by an instruction, moves the guest's RIP past
    /// it (guest RIP + VM-exit instruction length), so that VMRESUME
    /// continues after it.
    ///
    /// # Errors
    /// A VMWRITE failure.
    pub fn skip_instruction<C: Cpu + ?Sized>(&self, cpu: &mut C, exit: &VmExit) -> Result<()> {
        self.write(
            cpu,
            fields::GUEST_RIP,
            exit.guest_rip
                .wrapping_add(u64::from(exit.instruction_length)),
        )
    }
}

/// VMREAD of `field` as vmx-core's result.
pub(crate) fn read_field<C: Cpu + ?Sized>(cpu: &mut C, field: Field) -> Result<u64> {
    match cpu.vmread(field.encoding()) {
        Ok((VmxOutcome::Succeed, value)) => Ok(value),
        Ok((outcome, _)) => Err(Error::VmcsFieldFailed {
            field,
            write: false,
            outcome,
        }),
        Err(fault) => Err(Error::VmcsFieldFaulted {
            field,
            write: false,
            fault,
        }),
    }
}

fn check_and_prepare<C: Cpu + ?Sized, P: Page, Q: Page>(
    cpu: &mut C,
    processor: &Processor<Q>,
    region: &mut P,
) -> Result<()> {
    let ProcessorStatus::On {
        region: vmxon_region,
        ..
    } = processor.status()
    else {
        return Err(Error::NotEntered);
    };
    let physical_address = region.physical_address();
    if physical_address == vmxon_region {
        return Err(Error::VmcsIsVmxonRegion { physical_address });
    }
    let identity = CpuIdentity::read(|leaf, subleaf| Some(cpu.cpuid(leaf, subleaf)))
        .ok_or(Error::VmxNotSupported { hypervisor: None })?;
    let basic = cpu
        .read_msr(IA32_VMX_BASIC)
        .map(VmxBasic::from_raw)
        .map_err(|fault| Error::Faulted {
            instruction: Instruction::Rdmsr(IA32_VMX_BASIC),
            fault,
        })?;
    region::check_address(physical_address, identity.physical_address_width, basic).map_err(
        |error| match error {
            Error::RegionMisaligned { physical_address } => {
                Error::VmcsMisaligned { physical_address }
            }
            Error::RegionBeyondAddressWidth {
                physical_address,
                width,
            } => Error::VmcsBeyondAddressWidth {
                physical_address,
                width,
            },
            other => other,
        },
    )?;
    prepare(region.bytes_mut(), basic);
    execute(Instruction::Vmclear, cpu.vmclear(physical_address))?;
    execute(Instruction::Vmptrld, cpu.vmptrld(physical_address))
}

/// A VMX instruction's result as vmx-core's error.
fn execute(instruction: Instruction, result: Result<VmxOutcome, crate::cpu::Fault>) -> Result<()> {
    match result {
        Ok(VmxOutcome::Succeed) => Ok(()),
        Ok(VmxOutcome::FailInvalid) => Err(Error::VmFailInvalid { instruction }),
        Ok(VmxOutcome::FailValid(error)) => Err(Error::VmFailValid { instruction, error }),
        Err(fault) => Err(Error::Faulted { instruction, fault }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_zeroes_and_writes_an_ordinary_vmcs_header() {
        let mut page = [0xa5u8; VMCS_REGION_SIZE];
        // Bochs' corei7_skylake_x.
        prepare(&mut page, VmxBasic::from_raw(0x00d8_1000_0000_002b));
        assert_eq!(&page[..4], &[0x2b, 0, 0, 0]);
        assert!(page[4..].iter().all(|&b| b == 0));
        // Bit 31 is the shadow-VMCS indicator, never the revision's.
        prepare(&mut page, VmxBasic::from_raw(0x00d8_1000_8000_0004));
        assert_eq!(&page[..4], &[0x04, 0, 0, 0]);
    }

    use crate::cpu::Fault;
    use crate::instruction::VmInstructionError;
    use crate::sim::{Op, SimCpu, SimPage};

    fn entered() -> (SimCpu, Processor<SimPage>) {
        let mut cpu = SimCpu::skylake();
        let mut processor = Processor::new();
        processor.enter(&mut cpu, SimPage::new(0x1000)).unwrap();
        (cpu, processor)
    }

    #[test]
    fn load_clears_then_loads_a_prepared_region_and_clear_releases_it() {
        let (mut cpu, processor) = entered();
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        assert_eq!(vmcs.physical_address(), 0x2000);
        assert_eq!(cpu.current_vmcs, Some(0x2000));
        let vmx_ops: std::vec::Vec<Op> = cpu
            .ops
            .iter()
            .copied()
            .filter(|op| matches!(op, Op::Vmxon | Op::Vmclear | Op::Vmptrld))
            .collect();
        assert_eq!(vmx_ops, [Op::Vmxon, Op::Vmclear, Op::Vmptrld]);
        let page = vmcs.clear(&mut cpu).unwrap();
        assert_eq!(&page.bytes[..4], &[0x2b, 0, 0, 0]);
        assert!(page.bytes[4..].iter().all(|&b| b == 0));
        assert_eq!(cpu.current_vmcs, None);
    }

    #[test]
    fn bad_regions_are_refused_before_any_vmx_instruction() {
        let (mut cpu, processor) = entered();
        let cases = [
            (
                0x1000,
                Error::VmcsIsVmxonRegion {
                    physical_address: 0x1000,
                },
            ),
            (
                0x2008,
                Error::VmcsMisaligned {
                    physical_address: 0x2008,
                },
            ),
            (
                0x80_0000_0000,
                Error::VmcsBeyondAddressWidth {
                    physical_address: 0x80_0000_0000,
                    width: 39,
                },
            ),
        ];
        for (address, expected) in cases {
            let failure = Vmcs::load(&mut cpu, &processor, SimPage::new(address)).unwrap_err();
            assert_eq!(failure.error, expected);
            assert_eq!(failure.region.physical_address, address);
        }
        assert_eq!(cpu.count(Op::Vmclear) + cpu.count(Op::Vmptrld), 0);
        assert_eq!(cpu.current_vmcs, None);
    }

    #[test]
    fn load_outside_vmx_operation_is_refused_without_executing_anything() {
        let mut cpu = SimCpu::skylake();
        let failure =
            Vmcs::load(&mut cpu, &Processor::<SimPage>::new(), SimPage::new(0x2000)).unwrap_err();
        assert_eq!(failure.error, Error::NotEntered);
        assert!(cpu.ops.is_empty());
    }

    #[test]
    fn the_simulated_processor_answers_vmclear_and_vmptrld_as_the_sdm_says() {
        let mut cpu = SimCpu::skylake();
        assert_eq!(cpu.vmclear(0x2000), Err(Fault::InvalidOpcode));
        assert_eq!(cpu.vmptrld(0x2000), Err(Fault::InvalidOpcode));
        let (mut cpu, _processor) = entered();
        // No current VMCS: every VMfail is VMfailInvalid.
        assert_eq!(cpu.vmclear(0x1000), Ok(VmxOutcome::FailInvalid));
        assert_eq!(cpu.vmptrld(0x2001), Ok(VmxOutcome::FailInvalid));
        assert_eq!(cpu.vmptrld(0x2000), Ok(VmxOutcome::Succeed));
        // With one, VMfailValid and the number.
        let valid = |error| Ok(VmxOutcome::FailValid(error));
        assert_eq!(
            cpu.vmclear(0x2001),
            valid(VmInstructionError::VmclearInvalidAddress)
        );
        assert_eq!(
            cpu.vmclear(0x1000),
            valid(VmInstructionError::VmclearVmxonPointer)
        );
        assert_eq!(
            cpu.vmptrld(0x1000),
            valid(VmInstructionError::VmptrldVmxonPointer)
        );
        assert_eq!(
            cpu.vmptrld(0x80_0000_0000),
            valid(VmInstructionError::VmptrldInvalidAddress)
        );
        assert_eq!(cpu.vmxon(0x3000), valid(VmInstructionError::VmxonInVmxRoot));
        // VMCLEAR of another VMCS leaves the current one current.
        assert_eq!(cpu.vmclear(0x3000), Ok(VmxOutcome::Succeed));
        assert_eq!(cpu.current_vmcs, Some(0x2000));
        assert_eq!(cpu.vmclear(0x2000), Ok(VmxOutcome::Succeed));
        assert_eq!(cpu.current_vmcs, None);
        assert_eq!(cpu.vmxon(0x3000), Ok(VmxOutcome::FailInvalid));
    }

    use crate::cpu::GuestRegisters;
    use crate::entry_checks::{EntryFailure, Rule};
    use crate::inject::{Injecting, Injection};
    use crate::vm_exit::BasicExitReason;

    /// The minimal guest's VMCS on the simulated processor.
    fn describe(cpu: &mut SimCpu) -> (VmcsDescription, EntryCapabilities) {
        VmcsDescription::minimal_64bit(cpu, 0x20_0000, 0x30_0000).unwrap()
    }

    #[test]
    fn a_guest_runs_cpuid_and_vmcall_until_hlt_and_each_exit_is_skipped() {
        let (mut cpu, processor) = entered();
        let mut vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        let (description, capabilities) = describe(&mut cpu);
        vmcs.configure(&mut cpu, &description, &capabilities)
            .unwrap();
        assert_eq!(cpu.field(fields::GUEST_RIP), 0x20_0000);
        assert_eq!(cpu.field(fields::HOST_TR_SELECTOR), 0x20);
        assert_eq!(cpu.field(fields::VMCS_LINK_POINTER), u64::MAX);
        cpu.guest_script = [(10, 2), (18, 3), (10, 2), (18, 3)].into_iter().collect();
        let mut registers = GuestRegisters::default();
        let mut reasons = std::vec::Vec::new();
        loop {
            let EntryOutcome::Exit(exit) = vmcs.enter(&mut cpu, &mut registers).unwrap() else {
                panic!("no VM exit")
            };
            reasons.push(exit.reason);
            if exit.reason == BasicExitReason::Hlt {
                break;
            }
            vmcs.skip_instruction(&mut cpu, &exit).unwrap();
        }
        use BasicExitReason::{Cpuid, Hlt, Vmcall};
        assert_eq!(reasons, [Cpuid, Vmcall, Cpuid, Vmcall, Hlt]);
        assert_eq!(cpu.field(fields::GUEST_RIP), 0x20_0000 + 10);
        assert_eq!((cpu.count(Op::Vmlaunch), cpu.count(Op::Vmresume)), (1, 4));
        assert!(cpu.violations.is_empty(), "{:?}", cpu.violations);
        vmcs.clear(&mut cpu).unwrap();
        assert!(cpu.launched.is_empty());
    }

    #[test]
    fn a_broken_vmcs_is_refused_before_any_vmwrite_and_every_rule_named() {
        let (mut cpu, processor) = entered();
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        let (mut description, capabilities) = describe(&mut cpu);
        description.host.selectors.tr = 0;
        description.guest.rflags = 0;
        assert_eq!(
            vmcs.configure(&mut cpu, &description, &capabilities),
            Err(Error::EntryRulesBroken {
                rule: Rule::HostCsTrNotNull,
                failing: 2
            })
        );
        assert!(!cpu.ops.iter().any(|op| matches!(op, Op::Vmwrite(_))));
    }

    #[test]
    fn each_rule_broken_behind_the_checker_is_refused_by_the_simulation_as_the_sdm_says() {
        // The rules the simulated processor checks on its own.
        let checked = [
            Rule::PinBasedReserved,
            Rule::PrimaryReserved,
            Rule::ExitReserved,
            Rule::EntryReserved,
            Rule::HostCr0Fixed,
            Rule::HostCsTrNotNull,
            Rule::GuestCr0Fixed,
            Rule::GuestRflagsReserved,
            Rule::GuestVmcsLinkPointer,
        ];
        for rule in checked {
            let (cpu, processor) = entered();
            let mut cpu = cpu;
            let (description, capabilities) = describe(&mut cpu);
            let broken = entry_checks::break_rule(rule, &description).unwrap();
            assert_eq!(
                entry_checks::check(&broken, &capabilities)
                    .iter()
                    .collect::<std::vec::Vec<_>>(),
                [rule]
            );
            let (field, value) = description.differing_field(&broken).unwrap();
            let mut cpu = Injecting::new(
                cpu,
                Injection::OverrideField {
                    field: field.encoding(),
                    value,
                },
            );
            let mut vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
            vmcs.configure(&mut cpu, &description, &capabilities)
                .unwrap();
            let outcome = vmcs
                .enter(&mut cpu, &mut GuestRegisters::default())
                .unwrap();
            let expected = match rule.failure() {
                EntryFailure::VmFailValid(error) => EntryOutcome::FailValid(error),
                EntryFailure::ExitReason {
                    reason,
                    qualification,
                } => EntryOutcome::EntryFailure {
                    reason,
                    qualification,
                },
            };
            assert_eq!(outcome, expected, "{rule:?}");
            assert!(!vmcs.is_launched(), "{rule:?}");
        }
    }

    #[test]
    fn vmwrite_and_vmread_fail_as_the_sdm_says() {
        let (mut cpu, processor) = entered();
        assert_eq!(cpu.vmwrite(0x6c16, 1), Ok(VmxOutcome::FailInvalid));
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        assert_eq!(
            vmcs.write(&mut cpu, fields::VM_EXIT_REASON, 1),
            Err(Error::VmcsFieldFailed {
                field: fields::VM_EXIT_REASON,
                write: true,
                outcome: VmxOutcome::FailValid(VmInstructionError::VmwriteReadOnlyComponent)
            })
        );
        assert_eq!(
            vmcs.read(&mut cpu, Field::from_encoding(0x1000)),
            Err(Error::VmcsFieldFailed {
                field: Field::from_encoding(0x1000),
                write: false,
                outcome: VmxOutcome::FailValid(VmInstructionError::UnsupportedVmcsComponent)
            })
        );
        vmcs.write(&mut cpu, fields::GUEST_CS_SELECTOR, 0x1_0008)
            .unwrap();
        assert_eq!(vmcs.read(&mut cpu, fields::GUEST_CS_SELECTOR), Ok(0x8));
    }

    use crate::cpu::MockCpu;

    /// A VMCS as [`Vmcs::load`] would return it, for a mock processor.
    fn current() -> Vmcs<SimPage> {
        Vmcs {
            region: SimPage::new(0x2000),
            launched: false,
        }
    }

    #[test]
    fn an_entry_failure_is_decoded_from_bit_31_and_leaves_the_vmcs_unlaunched() {
        let mut cpu = MockCpu::new();
        let mut seq = mockall::Sequence::new();
        cpu.expect_vmlaunch()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(VmxOutcome::Succeed));
        cpu.expect_vmread()
            .withf(|&field| field == fields::VM_EXIT_REASON.encoding())
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok((VmxOutcome::Succeed, 0x8000_0022)));
        cpu.expect_vmread()
            .withf(|&field| field == fields::EXIT_QUALIFICATION.encoding())
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok((VmxOutcome::Succeed, 3)));
        let mut vmcs = current();
        assert_eq!(
            vmcs.enter(&mut cpu, &mut GuestRegisters::default()),
            Ok(EntryOutcome::EntryFailure {
                reason: BasicExitReason::MsrLoading,
                qualification: 3
            })
        );
        assert!(!vmcs.is_launched(), "the next entry is VMLAUNCH again");
    }

    #[test]
    fn vmfail_fault_and_a_failing_vmread_are_reported_not_hidden() {
        let mut cpu = MockCpu::new();
        cpu.expect_vmlaunch().times(1).returning(|_| {
            Ok(VmxOutcome::FailValid(
                VmInstructionError::EntryInvalidControlFields,
            ))
        });
        let mut vmcs = current();
        let mut registers = GuestRegisters::default();
        assert_eq!(
            vmcs.enter(&mut cpu, &mut registers),
            Ok(EntryOutcome::FailValid(
                VmInstructionError::EntryInvalidControlFields
            ))
        );
        cpu.checkpoint();
        cpu.expect_vmlaunch()
            .times(1)
            .returning(|_| Err(Fault::GeneralProtection));
        assert_eq!(
            vmcs.enter(&mut cpu, &mut registers),
            Err(Error::EntryFaulted {
                resume: false,
                fault: Fault::GeneralProtection
            })
        );
        cpu.checkpoint();
        cpu.expect_vmlaunch()
            .times(1)
            .returning(|_| Ok(VmxOutcome::Succeed));
        cpu.expect_vmread()
            .times(1)
            .returning(|_| Ok((VmxOutcome::FailInvalid, 0)));
        assert_eq!(
            vmcs.enter(&mut cpu, &mut registers),
            Err(Error::VmcsFieldFailed {
                field: fields::VM_EXIT_REASON,
                write: false,
                outcome: VmxOutcome::FailInvalid
            })
        );
        assert!(!vmcs.is_launched());
    }

    #[test]
    fn a_vm_exit_makes_the_next_entry_vmresume() {
        let mut cpu = MockCpu::new();
        let mut seq = mockall::Sequence::new();
        cpu.expect_vmlaunch()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|registers| {
                registers.rax = 7;
                Ok(VmxOutcome::Succeed)
            });
        cpu.expect_vmread()
            .times(4)
            .in_sequence(&mut seq)
            .returning(|field| {
                let value = match Field::from_encoding(field) {
                    fields::VM_EXIT_REASON => 18,
                    fields::VM_EXIT_INSTRUCTION_LEN => 3,
                    fields::GUEST_RIP => 0x1000,
                    _ => 0,
                };
                Ok((VmxOutcome::Succeed, value))
            });
        cpu.expect_vmwrite()
            .withf(|&field, &value| field == fields::GUEST_RIP.encoding() && value == 0x1003)
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(VmxOutcome::Succeed));
        cpu.expect_vmresume()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| {
                Ok(VmxOutcome::FailValid(
                    VmInstructionError::VmresumeNonLaunchedVmcs,
                ))
            });
        let mut vmcs = current();
        let mut registers = GuestRegisters::default();
        let EntryOutcome::Exit(exit) = vmcs.enter(&mut cpu, &mut registers).unwrap() else {
            panic!("no VM exit")
        };
        assert_eq!(exit.reason, BasicExitReason::Vmcall);
        assert_eq!(registers.rax, 7, "the guest's registers come back");
        assert!(vmcs.is_launched());
        vmcs.skip_instruction(&mut cpu, &exit).unwrap();
        assert_eq!(
            vmcs.enter(&mut cpu, &mut registers),
            Ok(EntryOutcome::FailValid(
                VmInstructionError::VmresumeNonLaunchedVmcs
            ))
        );
    }

    #[test]
    fn a_vmwrite_that_fails_is_reported_with_its_field() {
        let (mut cpu, processor) = entered();
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        let (description, capabilities) = describe(&mut cpu);
        // Someone else clears the VMCS: no VMCS is current any more.
        assert_eq!(cpu.vmclear(0x2000), Ok(VmxOutcome::Succeed));
        assert_eq!(
            vmcs.configure(&mut cpu, &description, &capabilities),
            Err(Error::VmcsFieldFailed {
                field: fields::PIN_BASED_VM_EXEC_CONTROL,
                write: true,
                outcome: VmxOutcome::FailInvalid
            })
        );
        assert_eq!(
            cpu.count(Op::Vmwrite(fields::PIN_BASED_VM_EXEC_CONTROL.encoding())),
            1
        );
    }

    #[test]
    fn the_description_read_back_is_what_was_written_and_names_what_the_processor_holds() {
        let (mut cpu, processor) = entered();
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        let (description, capabilities) = describe(&mut cpu);
        vmcs.configure(&mut cpu, &description, &capabilities)
            .unwrap();
        assert_eq!(
            vmcs.read_description(&mut cpu, &description),
            Ok(description)
        );
        // Behind the checker, the processor's copy breaks a rule: reading
        // it back names it.
        let broken = entry_checks::break_rule(Rule::GuestTrType, &description).unwrap();
        let (field, value) = description.differing_field(&broken).unwrap();
        vmcs.write(&mut cpu, field, value).unwrap();
        let held = vmcs.read_description(&mut cpu, &description).unwrap();
        assert_eq!(held, broken);
        assert_eq!(
            entry_checks::check(&held, &capabilities).first(),
            Some(Rule::GuestTrType)
        );
    }

    #[test]
    fn every_field_of_the_description_can_be_set_and_others_are_refused() {
        let (mut cpu, _processor) = entered();
        let (description, _) = describe(&mut cpu);
        // Every member the fields hold, changed through `set`.
        let mut rebuilt = description;
        for (field, value) in description.fields() {
            assert!(rebuilt.set(field, value ^ 1), "{field}");
        }
        for ((field, value), (_, changed)) in description.fields().zip(rebuilt.fields()) {
            let expected = match field {
                // Counts and masks vmx-core always writes as 0, not members.
                fields::VM_EXIT_MSR_STORE_COUNT
                | fields::VM_EXIT_MSR_LOAD_COUNT
                | fields::VM_ENTRY_MSR_LOAD_COUNT
                | fields::PAGE_FAULT_ERROR_CODE_MASK
                | fields::PAGE_FAULT_ERROR_CODE_MATCH
                | fields::CR0_GUEST_HOST_MASK
                | fields::CR4_GUEST_HOST_MASK => value,
                _ => value ^ 1,
            };
            assert_eq!(changed, expected, "{field}");
        }
        assert!(!rebuilt.set(fields::VM_EXIT_REASON, 1));
    }
}
