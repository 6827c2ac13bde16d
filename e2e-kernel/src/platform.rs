//! vmx-core's view of this machine: [`vmx_core::Processors`] over the
//! started processors, each running work with its real CPU (vmx-arch's
//! [`RealCpu`]), optionally with a fault injected on one processor
//! (vmx-core's [`Injecting`]), and a tally of the VMXON and VMXOFF
//! instructions that succeeded, so that the report can say how many
//! processors entered and left.

use vmx_arch::RealCpu;
use vmx_core::inject::{Injecting, Injection};
use vmx_core::{Cpu, CpuidResult, Fault, ProcessorUnavailable, Processors, VmxOutcome};

use crate::smp;

/// Successful VMX instructions, counted across all processors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// VMXONs that succeeded: processors that entered VMX operation.
    pub entered: usize,
    /// VMXOFFs that succeeded: processors that left it.
    pub left: usize,
}

/// A [`Cpu`] that counts the VMXON and VMXOFF successes of another.
#[derive(Debug)]
pub struct TallyingCpu<C> {
    inner: C,
    tally: Tally,
}

impl<C: Cpu> Cpu for TallyingCpu<C> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.inner.cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        self.inner.read_msr(msr)
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        self.inner.write_msr(msr, value)
    }

    fn read_cr0(&mut self) -> u64 {
        self.inner.read_cr0()
    }

    fn write_cr0(&mut self, value: u64) {
        self.inner.write_cr0(value);
    }

    fn read_cr4(&mut self) -> u64 {
        self.inner.read_cr4()
    }

    fn write_cr4(&mut self, value: u64) {
        self.inner.write_cr4(value);
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        let outcome = self.inner.vmxon(region);
        self.tally.entered += usize::from(outcome == Ok(VmxOutcome::Succeed));
        outcome
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        let outcome = self.inner.vmxoff();
        self.tally.left += usize::from(outcome == Ok(VmxOutcome::Succeed));
        outcome
    }
}

/// The started processors as vmx-core's platform.
#[derive(Debug)]
pub struct VmxProcessors<'a> {
    processors: &'a mut smp::Processors,
    /// The processor to break, and how.
    injection: Option<(usize, Injection)>,
    tally: Tally,
}

impl<'a> VmxProcessors<'a> {
    /// Every processor, no injection.
    pub fn new(processors: &'a mut smp::Processors) -> Self {
        Self {
            processors,
            injection: None,
            tally: Tally::default(),
        }
    }

    /// From now on, processor `index`'s CPU applies `injection`.
    pub fn inject(&mut self, index: usize, injection: Injection) {
        self.injection = Some((index, injection));
    }

    /// The VMX instructions that succeeded so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }
}

impl Processors for VmxProcessors<'_> {
    type Cpu = TallyingCpu<Injecting<RealCpu>>;

    fn count(&self) -> usize {
        self.processors.count()
    }

    fn run_on(
        &mut self,
        index: usize,
        work: &mut dyn FnMut(&mut Self::Cpu),
    ) -> Result<(), ProcessorUnavailable> {
        let injection = match self.injection {
            Some((target, injection)) if target == index => injection,
            _ => Injection::None,
        };
        let mut tally = Tally::default();
        self.processors
            .run_on(index, &mut || {
                // SAFETY: the kernel runs at CPL 0 with interrupts disabled;
                // the handle lives only while this work runs to completion on
                // this processor, and nothing else touches its CR0, CR4 or
                // VMX state meanwhile.
                let real = unsafe { RealCpu::new() };
                let mut cpu = TallyingCpu {
                    inner: Injecting::new(real, injection),
                    tally: Tally::default(),
                };
                work(&mut cpu);
                tally = cpu.tally;
            })
            .map_err(|smp::NoSuchProcessor| ProcessorUnavailable)?;
        self.tally.entered += tally.entered;
        self.tally.left += tally.left;
        Ok(())
    }
}
