//! vmx-core's view of this machine: [`vmx_core::Processors`] over the
//! started processors, each running work with its real CPU (vmx-arch's
//! [`RealCpu`]), optionally with a fault injected on one processor
//! (vmx-core's [`Injecting`]), and every privileged operation counted
//! (vmx-core's [`Counting`]), so that the report can say how many
//! processors entered and left and what it cost.

use vmx_arch::RealCpu;
use vmx_core::inject::{Injecting, Injection};
use vmx_core::{Counting, OperationCounts, ProcessorUnavailable, Processors};

use crate::smp;

/// The started processors as vmx-core's platform.
#[derive(Debug)]
pub struct VmxProcessors<'a> {
    processors: &'a mut smp::Processors,
    /// The processor to break, and how.
    injection: Option<(usize, Injection)>,
    counts: OperationCounts,
}

impl<'a> VmxProcessors<'a> {
    /// Every processor, no injection.
    pub fn new(processors: &'a mut smp::Processors) -> Self {
        Self {
            processors,
            injection: None,
            counts: OperationCounts::default(),
        }
    }

    /// From now on, processor `index`'s CPU applies `injection`.
    pub fn inject(&mut self, index: usize, injection: Injection) {
        self.injection = Some((index, injection));
    }

    /// From now on, no processor's CPU applies an injection.
    pub fn uninject(&mut self) {
        self.injection = None;
    }

    /// The privileged operations run so far, on every processor together.
    pub fn counts(&self) -> OperationCounts {
        self.counts
    }
}

impl Processors for VmxProcessors<'_> {
    type Cpu = Counting<Injecting<RealCpu>>;

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
        let mut counts = OperationCounts::default();
        self.processors
            .run_on(index, &mut || {
                // SAFETY: the kernel runs at CPL 0 with interrupts disabled;
                // the handle lives only while this work runs to completion on
                // this processor, and nothing else touches its CR0, CR4 or
                // VMX state meanwhile.
                let real = unsafe { RealCpu::new() };
                let mut cpu = Counting::new(Injecting::new(real, injection));
                work(&mut cpu);
                counts = cpu.counts();
            })
            .map_err(|smp::NoSuchProcessor| ProcessorUnavailable)?;
        self.counts += counts;
        Ok(())
    }
}
