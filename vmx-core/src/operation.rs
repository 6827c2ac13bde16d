//! Entering and leaving VMX operation on one logical processor (SDM,
//! "Enabling and Entering VMX Operation", "Leaving VMX Operation", and
//! VMXON's operation in the instruction reference).

use crate::cpu::{Cpu, Fault};
use crate::error::{Error, Instruction, Result};
use crate::feature_control::{FeatureControl, FeatureControlState, IA32_FEATURE_CONTROL};
use crate::fixed_bits::ControlRegister;
use crate::instruction::VmxOutcome;
use crate::plan::{self, Decision, Missing};
use crate::platform::Page;
use crate::region;

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

/// Entering failed; the processor is as it was (but for an
/// IA32_FEATURE_CONTROL that entering locked: the lock holds until reset)
/// and the page is handed back for freeing.
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
    /// VMXOFF raised #UD, the one answer that means "not in VMX operation":
    /// something else left it first) and the page may be freed; `None` when
    /// the processor may still be in VMX operation (VMfail, #GP or any other
    /// fault) and the page stays in use.
    pub region: Option<P>,
}

/// What entering changed in CR0 and CR4.
#[derive(Debug, Clone, Copy)]
struct Changes {
    original_cr0: u64,
    original_cr4: u64,
    /// The CR0 bits entering changed.
    cr0_changed: u64,
    /// The CR4 bits entering changed (VMXE among them).
    cr4_changed: u64,
}

#[derive(Debug)]
struct Entered<P> {
    region: P,
    revision_id: u32,
    changes: Changes,
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
                original_cr0: e.changes.original_cr0,
                original_cr4: e.changes.original_cr4,
            },
        }
    }

    /// Enters VMX operation on the processor `cpu` runs on, with `region`
    /// as the VMXON region.
    ///
    /// First every check, with nothing changed: [`plan::decide`] over what
    /// the processor reports (the same decision the diagnosis makes, so
    /// `ready` there means this goes ahead), then the region's address.
    /// Only then does anything change: an unlocked IA32_FEATURE_CONTROL is
    /// locked with VMX enabled (read back and verified), CR4 gets VMXE and
    /// the bits FIXED0 requires, CR0 the bits FIXED0 requires (never is a
    /// set bit cleared), and VMXON runs. If VMXON does not succeed, the
    /// bits entering changed in CR0 and CR4 are put back, and only those.
    /// Each MSR is read once (IA32_FEATURE_CONTROL twice when it is locked
    /// here), CR0 and CR4 once each, and each is written at most once on
    /// the way in.
    ///
    /// The processor is then as it was, with one exception: an
    /// IA32_FEATURE_CONTROL that entering locked stays locked (with VMX
    /// enabled) until the next reset, whatever happens after.
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
        let plan = match plan::decide_for(cpu) {
            Decision::Enter(plan) => plan,
            Decision::Refuse(error) => return Err(EnterFailure { error, region }),
            // A Cpu answers CR0 and CR4; this is for observers that cannot.
            Decision::AllowedUnlessControlRegisters => {
                return Err(EnterFailure {
                    error: Error::NotKnown {
                        missing: Missing::ControlRegister(ControlRegister::Cr4),
                    },
                    region,
                });
            }
            Decision::Unknown(missing) => {
                return Err(EnterFailure {
                    error: Error::NotKnown { missing },
                    region,
                });
            }
        };
        if let Err(error) = region::check_address(
            region.physical_address(),
            plan.identity.physical_address_width,
            plan.basic,
        ) {
            return Err(EnterFailure { error, region });
        }
        region::prepare(region.bytes_mut(), plan.basic);
        if let Err(error) =
            enable_in_feature_control(cpu, plan.feature_control, plan.identity.smx())
        {
            return Err(EnterFailure { error, region });
        }
        cpu.write_cr4(plan.cr4_target);
        if plan.cr0_target != plan.cr0 {
            cpu.write_cr0(plan.cr0_target);
        }
        let changes = Changes {
            original_cr0: plan.cr0,
            original_cr4: plan.cr4,
            cr0_changed: plan.cr0 ^ plan.cr0_target,
            cr4_changed: plan.cr4 ^ plan.cr4_target,
        };
        let error = match cpu.vmxon(region.physical_address()) {
            Ok(VmxOutcome::Succeed) => {
                self.entered = Some(Entered {
                    region,
                    revision_id: plan.basic.revision_id(),
                    changes,
                });
                return Ok(());
            }
            Ok(outcome) => outcome_error(Instruction::Vmxon, outcome),
            Err(fault) => Error::Faulted {
                instruction: Instruction::Vmxon,
                fault,
            },
        };
        // Roll back what entering changed, and only that, as leaving does.
        // KVM likewise clears CR4.VMXE when VMXON faults.
        changes.undo(cpu);
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
            Ok(VmxOutcome::Succeed) => {
                entered.changes.undo(cpu);
                Ok(entered.region)
            }
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
                let error = Error::Faulted {
                    instruction: Instruction::Vmxoff,
                    fault,
                };
                if fault == Fault::InvalidOpcode {
                    // #UD: the processor is not in VMX operation (someone
                    // left it before us). Put the registers back all the same.
                    entered.changes.undo(cpu);
                    return Err(LeaveFailure {
                        error,
                        region: Some(entered.region),
                    });
                }
                // #GP or anything else says nothing about having left: the
                // processor may still be in VMX operation, where CR4.VMXE
                // is fixed to 1 and the region still in use. Keep both.
                self.entered = Some(entered);
                Err(LeaveFailure {
                    error,
                    region: None,
                })
            }
        }
    }
}

impl Changes {
    /// Gives CR4 and CR0 back the bits entering changed, keeping every bit
    /// the system changed since (an OS may toggle CR4.PGE to flush the TLB
    /// while the processor is in VMX operation). Writes a register only when
    /// its value changes.
    fn undo<C: Cpu + ?Sized>(self, cpu: &mut C) {
        let cr4 = cpu.read_cr4();
        let cr4_back = (cr4 & !self.cr4_changed) | (self.original_cr4 & self.cr4_changed);
        if cr4_back != cr4 {
            cpu.write_cr4(cr4_back);
        }
        if self.cr0_changed != 0 {
            let cr0 = cpu.read_cr0();
            let cr0_back = (cr0 & !self.cr0_changed) | (self.original_cr0 & self.cr0_changed);
            if cr0_back != cr0 {
                cpu.write_cr0(cr0_back);
            }
        }
    }
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

/// Locks an unlocked IA32_FEATURE_CONTROL with VMX enabled, reads it back
/// and verifies it; does nothing when it is already enabled.
fn enable_in_feature_control<C: Cpu + ?Sized>(
    cpu: &mut C,
    current: FeatureControl,
    smx_supported: bool,
) -> Result<()> {
    if current.state() != FeatureControlState::Unlocked {
        return Ok(());
    }
    let written = current.lock_value(smx_supported);
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
