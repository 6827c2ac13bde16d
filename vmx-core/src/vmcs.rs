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

use crate::cpu::Cpu;
use crate::cpuid::CpuIdentity;
use crate::error::{Error, Instruction, Result};
use crate::instruction::VmxOutcome;
use crate::operation::{Processor, ProcessorStatus};
use crate::platform::Page;
use crate::region;
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
            Ok(()) => Ok(Self { region }),
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
}
