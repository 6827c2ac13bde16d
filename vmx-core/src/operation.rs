//! Entering and leaving VMX operation on one logical processor (SDM,
//! "Enabling and Entering VMX Operation", "Leaving VMX Operation", and
//! VMXON's operation in the instruction reference).

use crate::cpu::Cpu;
use crate::cpuid::CpuIdentity;
use crate::error::{Error, Instruction, Result};
use crate::feature_control::{FeatureControl, FeatureControlState, IA32_FEATURE_CONTROL};
use crate::fixed_bits::{
    CR0_PE, CR0_PG, CR4_SMXE, CR4_VMXE, ControlRegister, FixedBits, IA32_VMX_CR0_FIXED0,
    IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1,
};
use crate::instruction::VmxOutcome;
use crate::platform::Page;
use crate::region;
use crate::vmx_basic::{IA32_VMX_BASIC, VmxBasic};

/// What one processor's VMX operation looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorStatus {
    /// Not in VMX operation (as far as vmx-core put it there).
    Off,
    /// In VMX root operation.
    On {
        /// The VMXON region's physical address.
        region: u64,
        /// The VMCS revision identifier written into it.
        revision_id: u32,
        /// CR0 before entering.
        original_cr0: u64,
        /// CR4 before entering.
        original_cr4: u64,
    },
}

/// Entering failed; the processor is as it was and the page is handed back
/// for freeing.
#[derive(Debug)]
pub struct EnterFailure<P> {
    /// Why.
    pub error: Error,
    /// The page that was meant for the VMXON region, unused.
    pub region: P,
}

/// Leaving failed.
#[derive(Debug)]
pub struct LeaveFailure<P> {
    /// Why.
    pub error: Error,
    /// The page, when the processor is out of VMX operation after all (its
    /// VMXOFF raised #UD: something else left VMX operation first) and the
    /// page may be freed; `None` when the processor stays in VMX operation
    /// and the page stays in use.
    pub region: Option<P>,
}

#[derive(Debug)]
struct Entered<P> {
    region: P,
    revision_id: u32,
    original_cr0: u64,
    original_cr4: u64,
    /// The CR0 bits entering changed.
    cr0_changed: u64,
    /// The CR4 bits entering changed (VMXE among them).
    cr4_changed: u64,
}

/// The VMX state of one logical processor, owned by whoever drives it: a
/// driver keeps one per processor. Entering twice and leaving when not
/// entered are errors, never faults.
#[derive(Debug)]
pub struct Processor<P> {
    entered: Option<Entered<P>>,
}

impl<P> Default for Processor<P> {
    fn default() -> Self {
        Self { entered: None }
    }
}

/// The facts read before any state changes.
struct Plan {
    feature_control: FeatureControl,
    basic: VmxBasic,
    cr0: u64,
    cr4: u64,
    cr0_target: u64,
    cr4_target: u64,
}

impl<P> Processor<P> {
    /// A processor that is not in VMX operation.
    #[must_use]
    pub const fn new() -> Self {
        Self { entered: None }
    }

    /// Whether vmx-core put this processor in VMX operation.
    #[must_use]
    pub fn is_entered(&self) -> bool {
        self.entered.is_some()
    }
}

impl<P: Page> Processor<P> {
    /// The processor's status.
    #[must_use]
    pub fn status(&self) -> ProcessorStatus {
        match &self.entered {
            None => ProcessorStatus::Off,
            Some(e) => ProcessorStatus::On {
                region: e.region.physical_address(),
                revision_id: e.revision_id,
                original_cr0: e.original_cr0,
                original_cr4: e.original_cr4,
            },
        }
    }

    /// Enters VMX operation on the processor `cpu` runs on, with `region`
    /// as the VMXON region.
    ///
    /// In order: CPUID vendor and VMX bit; IA32_FEATURE_CONTROL; CR4.VMXE
    /// not already set; IA32_VMX_BASIC and the CR0/CR4 fixed bits; the
    /// region's address and contents. Only then does anything change: an
    /// unlocked IA32_FEATURE_CONTROL is locked with VMX enabled (read back
    /// and verified), CR4 gets VMXE and its fixed bits, CR0 its fixed bits,
    /// and VMXON runs. If VMXON does not succeed, CR0 and CR4 are put back
    /// exactly as they were. Each MSR is read once (IA32_FEATURE_CONTROL
    /// twice when it is locked here), CR0 and CR4 once each, and each is
    /// written at most once on the way in.
    ///
    /// # Errors
    /// The first check that fails, or VMXON's outcome; the page comes back
    /// unused in the [`EnterFailure`].
    pub fn enter<C: Cpu + ?Sized>(
        &mut self,
        cpu: &mut C,
        mut region: P,
    ) -> Result<(), EnterFailure<P>> {
        if self.entered.is_some() {
            return Err(EnterFailure {
                error: Error::AlreadyEntered,
                region,
            });
        }
        let plan = match plan(cpu, &region) {
            Ok(plan) => plan,
            Err(error) => return Err(EnterFailure { error, region }),
        };
        region::prepare(region.bytes_mut(), plan.basic);
        if let Err(error) = enable_in_feature_control(cpu, plan.feature_control, plan.cr4) {
            return Err(EnterFailure { error, region });
        }
        cpu.write_cr4(plan.cr4_target);
        if plan.cr0_target != plan.cr0 {
            cpu.write_cr0(plan.cr0_target);
        }
        let error = match cpu.vmxon(region.physical_address()) {
            Ok(VmxOutcome::Succeed) => {
                self.entered = Some(Entered {
                    region,
                    revision_id: plan.basic.revision_id(),
                    original_cr0: plan.cr0,
                    original_cr4: plan.cr4,
                    cr0_changed: plan.cr0 ^ plan.cr0_target,
                    cr4_changed: plan.cr4 ^ plan.cr4_target,
                });
                return Ok(());
            }
            Ok(outcome) => outcome_error(Instruction::Vmxon, outcome),
            Err(fault) => Error::Faulted {
                instruction: Instruction::Vmxon,
                fault,
            },
        };
        // Roll back in reverse order. KVM likewise clears CR4.VMXE when
        // VMXON faults.
        if plan.cr0_target != plan.cr0 {
            cpu.write_cr0(plan.cr0);
        }
        cpu.write_cr4(plan.cr4);
        Err(EnterFailure { error, region })
    }

    /// Leaves VMX operation: VMXOFF, then CR4 and CR0 get back the bits
    /// entering changed (bits the system changed since are kept: an OS may
    /// toggle CR4.PGE to flush the TLB while the processor is in VMX
    /// operation). Returns the VMXON region's page for freeing.
    ///
    /// # Errors
    /// [`Error::NotEntered`] when vmx-core did not enter VMX operation
    /// here (nothing is executed); VMXOFF's failure otherwise, see
    /// [`LeaveFailure`].
    pub fn leave<C: Cpu + ?Sized>(&mut self, cpu: &mut C) -> Result<P, LeaveFailure<P>> {
        let Some(entered) = self.entered.take() else {
            return Err(LeaveFailure {
                error: Error::NotEntered,
                region: None,
            });
        };
        match cpu.vmxoff() {
            Ok(VmxOutcome::Succeed) => Ok(restore(cpu, entered)),
            Ok(outcome) => {
                // Still in VMX operation: CR4.VMXE is fixed to 1 there.
                let error = outcome_error(Instruction::Vmxoff, outcome);
                self.entered = Some(entered);
                Err(LeaveFailure {
                    error,
                    region: None,
                })
            }
            Err(fault) => {
                // #UD: the processor is not in VMX operation (someone left it
                // before us). Put the registers back all the same.
                let error = Error::Faulted {
                    instruction: Instruction::Vmxoff,
                    fault,
                };
                Err(LeaveFailure {
                    error,
                    region: Some(restore(cpu, entered)),
                })
            }
        }
    }
}

fn restore<C: Cpu + ?Sized, P>(cpu: &mut C, entered: Entered<P>) -> P {
    let cr4 = cpu.read_cr4();
    let cr4_back = (cr4 & !entered.cr4_changed) | (entered.original_cr4 & entered.cr4_changed);
    if cr4_back != cr4 {
        cpu.write_cr4(cr4_back);
    }
    if entered.cr0_changed != 0 {
        let cr0 = cpu.read_cr0();
        let cr0_back = (cr0 & !entered.cr0_changed) | (entered.original_cr0 & entered.cr0_changed);
        if cr0_back != cr0 {
            cpu.write_cr0(cr0_back);
        }
    }
    entered.region
}

fn outcome_error(instruction: Instruction, outcome: VmxOutcome) -> Error {
    match outcome {
        VmxOutcome::FailValid(error) => Error::VmFailValid { instruction, error },
        // Succeed is not an error; callers only pass failures.
        VmxOutcome::FailInvalid | VmxOutcome::Succeed => Error::VmFailInvalid { instruction },
    }
}

fn read_msr<C: Cpu + ?Sized>(cpu: &mut C, msr: u32) -> Result<u64> {
    cpu.read_msr(msr).map_err(|fault| Error::Faulted {
        instruction: Instruction::Rdmsr(msr),
        fault,
    })
}

fn fixed_bits<C: Cpu + ?Sized>(cpu: &mut C, register: ControlRegister) -> Result<FixedBits> {
    let (msr0, msr1) = match register {
        ControlRegister::Cr0 => (IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1),
        ControlRegister::Cr4 => (IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1),
    };
    let fixed0 = read_msr(cpu, msr0)?;
    let fixed1 = read_msr(cpu, msr1)?;
    let bits = FixedBits::new(fixed0, fixed1);
    if bits.is_satisfiable() {
        Ok(bits)
    } else {
        Err(Error::FixedBitsUnsatisfiable {
            register,
            fixed0,
            fixed1,
        })
    }
}

/// Every check, with nothing changed yet.
fn plan<C: Cpu + ?Sized, P: Page>(cpu: &mut C, region: &P) -> Result<Plan> {
    let identity = CpuIdentity::read(|leaf, subleaf| Some(cpu.cpuid(leaf, subleaf)))
        .ok_or(Error::VmxNotSupported { hypervisor: None })?;
    if identity.vendor != crate::cpuid::Vendor::Intel {
        return Err(Error::NotIntel {
            vendor: identity.vendor,
        });
    }
    if !identity.vmx() {
        return Err(Error::VmxNotSupported {
            hypervisor: identity.hypervisor,
        });
    }
    let feature_control = FeatureControl::from_raw(read_msr(cpu, IA32_FEATURE_CONTROL)?);
    match feature_control.state() {
        FeatureControlState::Enabled | FeatureControlState::Unlocked => {}
        FeatureControlState::DisabledByFirmware => {
            return Err(Error::DisabledByFirmware {
                msr: feature_control.raw(),
            });
        }
        FeatureControlState::VmxOnlyInsideSmx => {
            return Err(Error::VmxOnlyInsideSmx {
                msr: feature_control.raw(),
            });
        }
    }
    let cr4 = cpu.read_cr4();
    if cr4 & CR4_VMXE != 0 {
        return Err(Error::InUse { cr4 });
    }
    let basic = VmxBasic::from_raw(read_msr(cpu, IA32_VMX_BASIC)?);
    basic.check_usable()?;
    let cr0_fixed = fixed_bits(cpu, ControlRegister::Cr0)?;
    let cr4_fixed = fixed_bits(cpu, ControlRegister::Cr4)?;
    region::check_address(
        region.physical_address(),
        identity.physical_address_width,
        basic,
    )?;
    let cr0 = cpu.read_cr0();
    let cr0_target = cr0_fixed.adjust(cr0);
    if (cr0 ^ cr0_target) & (CR0_PE | CR0_PG) != 0 {
        return Err(Error::Cr0ChangeRefused {
            cr0,
            adjusted: cr0_target,
        });
    }
    Ok(Plan {
        feature_control,
        basic,
        cr0,
        cr4,
        cr0_target,
        cr4_target: cr4_fixed.adjust(cr4 | CR4_VMXE),
    })
}

/// Locks an unlocked IA32_FEATURE_CONTROL with VMX enabled, reads it back
/// and verifies it; does nothing when it is already enabled.
fn enable_in_feature_control<C: Cpu + ?Sized>(
    cpu: &mut C,
    current: FeatureControl,
    cr4: u64,
) -> Result<()> {
    if current.state() != FeatureControlState::Unlocked {
        return Ok(());
    }
    let written = current.lock_value(cr4 & CR4_SMXE != 0);
    cpu.write_msr(IA32_FEATURE_CONTROL, written)
        .map_err(|fault| Error::Faulted {
            instruction: Instruction::Wrmsr(IA32_FEATURE_CONTROL),
            fault,
        })?;
    let read = read_msr(cpu, IA32_FEATURE_CONTROL)?;
    if FeatureControl::from_raw(read).state() != FeatureControlState::Enabled {
        return Err(Error::FeatureControlNotLocked { written, read });
    }
    Ok(())
}
