//! A [`Cpu`] wrapper that counts the privileged operations another performs:
//! the measure of what entering and leaving VMX operation costs, on any
//! backend (the simulated processor, an emulated one, real hardware).

use crate::cpu::{Cpu, CpuidResult, Fault};
use crate::instruction::VmxOutcome;

/// How many of each privileged operation ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OperationCounts {
    /// CPUID.
    pub cpuid: usize,
    /// RDMSR.
    pub rdmsr: usize,
    /// WRMSR.
    pub wrmsr: usize,
    /// MOV from CR0.
    pub cr0_reads: usize,
    /// MOV to CR0.
    pub cr0_writes: usize,
    /// MOV from CR4.
    pub cr4_reads: usize,
    /// MOV to CR4.
    pub cr4_writes: usize,
    /// VMXON, whatever its outcome.
    pub vmxon: usize,
    /// VMXON that succeeded: the processor entered VMX operation.
    pub vmxon_succeeded: usize,
    /// VMXOFF, whatever its outcome.
    pub vmxoff: usize,
    /// VMXOFF that succeeded: the processor left VMX operation.
    pub vmxoff_succeeded: usize,
    /// VMCLEAR, whatever its outcome.
    pub vmclear: usize,
    /// VMPTRLD, whatever its outcome.
    pub vmptrld: usize,
}

impl OperationCounts {
    /// Every operation, added up.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.cpuid
            + self.rdmsr
            + self.wrmsr
            + self.cr0_reads
            + self.cr0_writes
            + self.cr4_reads
            + self.cr4_writes
            + self.vmxon
            + self.vmxoff
            + self.vmclear
            + self.vmptrld
    }
}

impl core::ops::Sub for OperationCounts {
    type Output = Self;

    /// The operations between two readings (`later - earlier`).
    fn sub(self, earlier: Self) -> Self {
        Self {
            cpuid: self.cpuid.saturating_sub(earlier.cpuid),
            rdmsr: self.rdmsr.saturating_sub(earlier.rdmsr),
            wrmsr: self.wrmsr.saturating_sub(earlier.wrmsr),
            cr0_reads: self.cr0_reads.saturating_sub(earlier.cr0_reads),
            cr0_writes: self.cr0_writes.saturating_sub(earlier.cr0_writes),
            cr4_reads: self.cr4_reads.saturating_sub(earlier.cr4_reads),
            cr4_writes: self.cr4_writes.saturating_sub(earlier.cr4_writes),
            vmxon: self.vmxon.saturating_sub(earlier.vmxon),
            vmxon_succeeded: self.vmxon_succeeded.saturating_sub(earlier.vmxon_succeeded),
            vmxoff: self.vmxoff.saturating_sub(earlier.vmxoff),
            vmxoff_succeeded: self
                .vmxoff_succeeded
                .saturating_sub(earlier.vmxoff_succeeded),
            vmclear: self.vmclear.saturating_sub(earlier.vmclear),
            vmptrld: self.vmptrld.saturating_sub(earlier.vmptrld),
        }
    }
}

impl core::fmt::Display for OperationCounts {
    /// `15 (4 CPUID, 6 RDMSR, 0 WRMSR, CR0 1 read 1 write, CR4 1 read 1
    /// write, 1 VMXON, 0 VMXOFF)`; VMCLEAR and VMPTRLD are named after
    /// VMXOFF only when some ran (`, 1 VMCLEAR, 1 VMPTRLD`), so that the
    /// figures of entering and leaving read as they always have.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} ({} CPUID, {} RDMSR, {} WRMSR, CR0 {} read {} write, CR4 {} read {} write, {} VMXON, {} VMXOFF",
            self.total(),
            self.cpuid,
            self.rdmsr,
            self.wrmsr,
            self.cr0_reads,
            self.cr0_writes,
            self.cr4_reads,
            self.cr4_writes,
            self.vmxon,
            self.vmxoff
        )?;
        if self.vmclear + self.vmptrld > 0 {
            write!(f, ", {} VMCLEAR, {} VMPTRLD", self.vmclear, self.vmptrld)?;
        }
        f.write_str(")")
    }
}

impl core::ops::AddAssign for OperationCounts {
    fn add_assign(&mut self, other: Self) {
        self.cpuid += other.cpuid;
        self.rdmsr += other.rdmsr;
        self.wrmsr += other.wrmsr;
        self.cr0_reads += other.cr0_reads;
        self.cr0_writes += other.cr0_writes;
        self.cr4_reads += other.cr4_reads;
        self.cr4_writes += other.cr4_writes;
        self.vmxon += other.vmxon;
        self.vmxon_succeeded += other.vmxon_succeeded;
        self.vmxoff += other.vmxoff;
        self.vmxoff_succeeded += other.vmxoff_succeeded;
        self.vmclear += other.vmclear;
        self.vmptrld += other.vmptrld;
    }
}

/// A [`Cpu`] that counts what another does and passes everything through.
#[derive(Debug)]
pub struct Counting<C> {
    inner: C,
    counts: OperationCounts,
}

impl<C: Cpu> Counting<C> {
    /// Counts the operations of `inner`, from zero.
    pub const fn new(inner: C) -> Self {
        Self {
            inner,
            counts: OperationCounts {
                cpuid: 0,
                rdmsr: 0,
                wrmsr: 0,
                cr0_reads: 0,
                cr0_writes: 0,
                cr4_reads: 0,
                cr4_writes: 0,
                vmxon: 0,
                vmxon_succeeded: 0,
                vmxoff: 0,
                vmxoff_succeeded: 0,
                vmclear: 0,
                vmptrld: 0,
            },
        }
    }

    /// The counts so far.
    pub const fn counts(&self) -> OperationCounts {
        self.counts
    }

    /// The wrapped CPU.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: Cpu> Cpu for Counting<C> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.counts.cpuid += 1;
        self.inner.cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        self.counts.rdmsr += 1;
        self.inner.read_msr(msr)
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        self.counts.wrmsr += 1;
        self.inner.write_msr(msr, value)
    }

    fn read_cr0(&mut self) -> u64 {
        self.counts.cr0_reads += 1;
        self.inner.read_cr0()
    }

    fn write_cr0(&mut self, value: u64) {
        self.counts.cr0_writes += 1;
        self.inner.write_cr0(value);
    }

    fn read_cr4(&mut self) -> u64 {
        self.counts.cr4_reads += 1;
        self.inner.read_cr4()
    }

    fn write_cr4(&mut self, value: u64) {
        self.counts.cr4_writes += 1;
        self.inner.write_cr4(value);
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.counts.vmxon += 1;
        let outcome = self.inner.vmxon(region);
        self.counts.vmxon_succeeded += usize::from(outcome == Ok(VmxOutcome::Succeed));
        outcome
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        self.counts.vmxoff += 1;
        let outcome = self.inner.vmxoff();
        self.counts.vmxoff_succeeded += usize::from(outcome == Ok(VmxOutcome::Succeed));
        outcome
    }

    fn vmclear(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.counts.vmclear += 1;
        self.inner.vmclear(region)
    }

    fn vmptrld(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.counts.vmptrld += 1;
        self.inner.vmptrld(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::Processor;
    use crate::sim::{SimCpu, SimPage};
    use crate::vmcs::Vmcs;

    #[test]
    fn vmclear_and_vmptrld_are_counted_and_named_only_when_they_ran() {
        let mut cpu = Counting::new(SimCpu::skylake());
        let mut processor = Processor::new();
        processor.enter(&mut cpu, SimPage::new(0x1000)).unwrap();
        let entering = cpu.counts();
        // The line the e2e kernel prints for entering reads as it always has.
        assert_eq!(
            std::format!("{entering}"),
            "15 (4 CPUID, 6 RDMSR, 0 WRMSR, CR0 1 read 1 write, CR4 1 read 1 write, 1 VMXON, 0 VMXOFF)"
        );
        let vmcs = Vmcs::load(&mut cpu, &processor, SimPage::new(0x2000)).unwrap();
        vmcs.clear(&mut cpu).unwrap();
        let vmcs_ops = cpu.counts() - entering;
        assert_eq!((vmcs_ops.vmclear, vmcs_ops.vmptrld), (2, 1));
        assert!(std::format!("{vmcs_ops}").ends_with(", 0 VMXOFF, 2 VMCLEAR, 1 VMPTRLD)"));
        assert_eq!(vmcs_ops.total(), vmcs_ops.cpuid + vmcs_ops.rdmsr + 3);
    }
}
