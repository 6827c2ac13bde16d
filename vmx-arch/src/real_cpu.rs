//! The processor the code runs on, as a [`vmx_core::Cpu`].

use core::marker::PhantomData;

use vmx_core::{Cpu, CpuidResult, Fault, VmxOutcome};

use crate::instructions;

/// The VM-instruction error field of the current VMCS (SDM Appendix B,
/// "32-Bit Read-Only Data Fields"), read after VMfailValid.
const VM_INSTRUCTION_ERROR: u64 = x86::vmx::vmcs::ro::VM_INSTRUCTION_ERROR as u64;

/// The logical processor the code runs on, driven by real instructions.
///
/// Not `Send`: its methods act on whichever processor executes them, so a
/// value must stay on the processor (thread pinned, or interrupts off) it
/// was made for.
#[derive(Debug)]
pub struct RealCpu {
    _not_send: PhantomData<*const ()>,
}

impl RealCpu {
    /// A handle to the current logical processor.
    ///
    /// # Safety
    /// The caller runs at CPL 0 (a kernel, a driver, firmware) and stays on
    /// this processor while it uses the handle, and no other code changes
    /// CR0, CR4 or VMX operation on this processor meanwhile. The
    /// instructions are executed as vmx-core asks; vmx-core checks their
    /// architectural preconditions first.
    #[must_use]
    pub unsafe fn new() -> Self {
        Self {
            _not_send: PhantomData,
        }
    }
}

fn outcome(rflags: u64) -> VmxOutcome {
    VmxOutcome::from_rflags(rflags, || {
        // SAFETY: ZF after a VMX instruction means there is a current VMCS
        // whose VM-instruction error field holds the number; a RealCpu only
        // exists at CPL 0 (RealCpu::new's contract).
        let read = unsafe { instructions::vmread(VM_INSTRUCTION_ERROR) };
        read.ok().flatten().map_or(0, |v| v as u32)
    })
}

impl Cpu for RealCpu {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        crate::cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        // SAFETY: CPL 0 by RealCpu::new's contract; vmx-core reads only the
        // MSRs the SDM says exist, and a guarded read reports a fault.
        unsafe { instructions::rdmsr(msr) }.map_err(Fault::from_vector)
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        // SAFETY: CPL 0 by RealCpu::new's contract; vmx-core writes only
        // IA32_FEATURE_CONTROL, and only to lock it with VMX enabled.
        unsafe { instructions::wrmsr(msr, value) }.map_err(Fault::from_vector)
    }

    fn read_cr0(&mut self) -> u64 {
        // SAFETY: CPL 0 by RealCpu::new's contract.
        unsafe { instructions::read_cr0() }
    }

    fn write_cr0(&mut self, value: u64) {
        // SAFETY: CPL 0; vmx-core only sets bits the VMX fixed bits require
        // (never PE or PG) and puts back what it changed.
        unsafe { instructions::write_cr0(value) }
    }

    fn read_cr4(&mut self) -> u64 {
        // SAFETY: CPL 0 by RealCpu::new's contract.
        unsafe { instructions::read_cr4() }
    }

    fn write_cr4(&mut self, value: u64) {
        // SAFETY: CPL 0; vmx-core only sets VMXE (after checking CPUID's VMX
        // bit) and the fixed bits, and puts back what it changed.
        unsafe { instructions::write_cr4(value) }
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        // SAFETY: CPL 0; vmx-core passes a prepared, aligned region that it
        // keeps until VMXOFF.
        unsafe { instructions::vmxon(region) }
            .map(outcome)
            .map_err(Fault::from_vector)
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        // SAFETY: CPL 0; vmx-core calls VMXOFF only on a processor it entered.
        unsafe { instructions::vmxoff() }
            .map(outcome)
            .map_err(Fault::from_vector)
    }

    fn vmclear(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        // SAFETY: CPL 0; vmx-core passes a VMCS region it owns (VMCLEAR
        // writes to it) and has checked its address.
        unsafe { instructions::vmclear(region) }
            .map(outcome)
            .map_err(Fault::from_vector)
    }

    fn vmptrld(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        // SAFETY: CPL 0; vmx-core passes a prepared VMCS region that it
        // keeps until it clears it.
        unsafe { instructions::vmptrld(region) }
            .map(outcome)
            .map_err(Fault::from_vector)
    }
}
