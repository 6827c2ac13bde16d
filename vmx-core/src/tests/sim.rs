//! A simulated machine for the multi-processor tests: processors that
//! follow the SDM's rules for the operations vmx-core uses (VMXON's
//! preconditions, the lock bit, CR4.VMXE inside VMX operation), a platform
//! that runs work on them, and an allocator that tracks every page.
//!
//! The rules are the SDM's, checked independently of vmx-core: VMXON raises
//! #UD with CR4.VMXE clear, #GP outside the fixed bits or without
//! IA32_FEATURE_CONTROL locked and enabled, VMfailInvalid for a misaligned
//! or too-wide pointer. A write that real hardware would fault on is
//! recorded as a violation, which every test asserts never happens.

use std::boxed::Box;
use std::collections::BTreeSet;
use std::vec::Vec;

use crate::cpu::{Cpu, CpuidResult, Fault};
use crate::instruction::{VmInstructionError, VmxOutcome};
use crate::platform::{OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors};

/// Bochs corei7_skylake_x values (see the issue that specified vmx-core).
pub const BASIC: u64 = 0x00d8_1000_0000_002b;
pub const CR0_FIXED: (u64, u64) = (0x8000_0021, 0xffff_ffff);
pub const CR4_FIXED: (u64, u64) = (0x2000, 0x0037_27ff);
/// CR0 and CR4 in a kernel GRUB booted under Bochs.
pub const GRUB_CR0: u64 = 0xe000_0011;
pub const GRUB_CR4: u64 = 0x20;

/// One step of entering that a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Vendor,
    VmxBit,
    FeatureControlRead,
    FeatureControlDisabled,
    InUse,
    BasicRead,
    BasicUnusable,
    FixedBitsRead,
    LockWrite,
    LockReadback,
    VmxonFailInvalid,
    VmxonFailValid,
    VmxonFault,
    Allocate,
    RunOn,
}

impl Step {
    pub const ALL: [Self; 15] = [
        Self::Vendor,
        Self::VmxBit,
        Self::FeatureControlRead,
        Self::FeatureControlDisabled,
        Self::InUse,
        Self::BasicRead,
        Self::BasicUnusable,
        Self::FixedBitsRead,
        Self::LockWrite,
        Self::LockReadback,
        Self::VmxonFailInvalid,
        Self::VmxonFailValid,
        Self::VmxonFault,
        Self::Allocate,
        Self::RunOn,
    ];
}

/// A privileged operation, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Cpuid(u32),
    ReadMsr(u32),
    WriteMsr(u32),
    ReadCr0,
    WriteCr0,
    ReadCr4,
    WriteCr4,
    Vmxon,
    Vmxoff,
}

#[derive(Debug)]
pub struct SimCpu {
    pub vendor: [u8; 12],
    pub vmx: bool,
    pub feature_control: u64,
    pub cr0: u64,
    pub cr4: u64,
    pub basic: u64,
    pub physical_address_width: u8,
    pub in_vmx: bool,
    pub fail: Option<Step>,
    pub ops: Vec<Op>,
    /// Writes that real hardware would have faulted on.
    pub violations: Vec<&'static str>,
}

impl SimCpu {
    /// A Bochs corei7_skylake_x processor after GRUB, firmware-locked.
    pub fn skylake() -> Self {
        Self {
            vendor: *b"GenuineIntel",
            vmx: true,
            feature_control: 0x5,
            cr0: GRUB_CR0,
            cr4: GRUB_CR4,
            basic: BASIC,
            physical_address_width: 39,
            in_vmx: false,
            fail: None,
            ops: Vec::new(),
            violations: Vec::new(),
        }
    }

    pub fn failing(step: Step) -> Self {
        let mut cpu = Self::skylake();
        cpu.fail = Some(step);
        match step {
            Step::Vendor => cpu.vendor = *b"AuthenticAMD",
            Step::VmxBit => cpu.vmx = false,
            Step::FeatureControlDisabled => cpu.feature_control = 0x1,
            Step::LockWrite | Step::LockReadback => cpu.feature_control = 0x0,
            Step::InUse => cpu.cr4 |= 1 << 13,
            Step::BasicUnusable => cpu.basic &= !(0xf << 50),
            _ => {}
        }
        cpu
    }

    fn fixed_ok(&self) -> bool {
        let ok = |v: u64, (f0, f1): (u64, u64)| (!v & f0) == 0 && (v & !f1) == 0;
        ok(self.cr0, CR0_FIXED) && ok(self.cr4, CR4_FIXED)
    }

    pub fn count(&self, op: Op) -> usize {
        self.ops.iter().filter(|&&o| o == op).count()
    }
}

fn le(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap())
}

impl Cpu for SimCpu {
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> CpuidResult {
        self.ops.push(Op::Cpuid(leaf));
        let v = &self.vendor;
        match leaf {
            0 => CpuidResult {
                eax: 0x16,
                ebx: le(&v[0..4]),
                ecx: le(&v[8..12]),
                edx: le(&v[4..8]),
            },
            1 => CpuidResult {
                eax: 0x50654,
                ebx: 0,
                ecx: if self.vmx { 0x77fa_f3bf } else { 0x77fa_f39f },
                edx: 0xbfeb_fbff,
            },
            0x8000_0000 => CpuidResult {
                eax: 0x8000_0008,
                ..Default::default()
            },
            0x8000_0008 => CpuidResult {
                eax: 0x3000 | u32::from(self.physical_address_width),
                ..Default::default()
            },
            _ => CpuidResult::default(),
        }
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        self.ops.push(Op::ReadMsr(msr));
        let gp = Err(Fault::GeneralProtection);
        match msr {
            0x3a if self.fail == Some(Step::FeatureControlRead) => gp,
            0x3a => Ok(self.feature_control),
            0x480 if self.fail == Some(Step::BasicRead) => gp,
            0x480 => Ok(self.basic),
            0x486..=0x489 if self.fail == Some(Step::FixedBitsRead) => gp,
            0x486 => Ok(CR0_FIXED.0),
            0x487 => Ok(CR0_FIXED.1),
            0x488 => Ok(CR4_FIXED.0),
            0x489 => Ok(CR4_FIXED.1),
            _ => gp,
        }
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        self.ops.push(Op::WriteMsr(msr));
        if msr != 0x3a || self.feature_control & 1 != 0 || self.fail == Some(Step::LockWrite) {
            return Err(Fault::GeneralProtection);
        }
        if value & 1 != 0 && value & 0x6 == 0 {
            self.violations
                .push("IA32_FEATURE_CONTROL locked without enabling VMX");
        }
        if self.fail != Some(Step::LockReadback) {
            self.feature_control = value;
        }
        Ok(())
    }

    fn read_cr0(&mut self) -> u64 {
        self.ops.push(Op::ReadCr0);
        self.cr0
    }

    fn write_cr0(&mut self, value: u64) {
        self.ops.push(Op::WriteCr0);
        if self.in_vmx && !((!value & CR0_FIXED.0) == 0 && (value & !CR0_FIXED.1) == 0) {
            self.violations
                .push("CR0 left the fixed bits in VMX operation (#GP)");
            return;
        }
        self.cr0 = value;
    }

    fn read_cr4(&mut self) -> u64 {
        self.ops.push(Op::ReadCr4);
        self.cr4
    }

    fn write_cr4(&mut self, value: u64) {
        self.ops.push(Op::WriteCr4);
        if value & (1 << 13) != 0 && !self.vmx {
            self.violations.push("CR4.VMXE set without VMX (#GP)");
            return;
        }
        if self.in_vmx && value & (1 << 13) == 0 {
            self.violations
                .push("CR4.VMXE cleared in VMX operation (#GP)");
            return;
        }
        self.cr4 = value;
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmxon);
        if self.cr4 & (1 << 13) == 0 {
            return Err(Fault::InvalidOpcode);
        }
        if self.in_vmx {
            return Ok(VmxOutcome::FailValid(VmInstructionError::VmxonInVmxRoot));
        }
        if !self.fixed_ok() || self.feature_control & 0x5 != 0x5 {
            return Err(Fault::GeneralProtection);
        }
        if region & 0xfff != 0 || region >> self.physical_address_width != 0 {
            return Ok(VmxOutcome::FailInvalid);
        }
        match self.fail {
            Some(Step::VmxonFailInvalid) => Ok(VmxOutcome::FailInvalid),
            Some(Step::VmxonFailValid) => {
                Ok(VmxOutcome::FailValid(VmInstructionError::from_number(99)))
            }
            Some(Step::VmxonFault) => Err(Fault::GeneralProtection),
            _ => {
                self.in_vmx = true;
                Ok(VmxOutcome::Succeed)
            }
        }
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmxoff);
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        self.in_vmx = false;
        Ok(VmxOutcome::Succeed)
    }
}

/// A machine of simulated processors.
#[derive(Debug)]
pub struct SimMachine {
    pub cpus: Vec<SimCpu>,
    pub unreachable: Option<usize>,
}

impl SimMachine {
    pub fn new(count: usize) -> Self {
        Self {
            cpus: (0..count).map(|_| SimCpu::skylake()).collect(),
            unreachable: None,
        }
    }
}

impl Processors for SimMachine {
    type Cpu = SimCpu;

    fn count(&self) -> usize {
        self.cpus.len()
    }

    fn run_on(
        &mut self,
        index: usize,
        work: &mut dyn FnMut(&mut SimCpu),
    ) -> Result<(), ProcessorUnavailable> {
        if self.unreachable == Some(index) {
            return Err(ProcessorUnavailable);
        }
        let cpu = self.cpus.get_mut(index).ok_or(ProcessorUnavailable)?;
        work(cpu);
        Ok(())
    }
}

#[derive(Debug)]
pub struct SimPage {
    pub physical_address: u64,
    pub bytes: Box<[u8; 4096]>,
}

impl Page for SimPage {
    fn bytes_mut(&mut self) -> &mut [u8; 4096] {
        &mut self.bytes
    }

    fn physical_address(&self) -> u64 {
        self.physical_address
    }
}

/// Hands out pages at increasing physical addresses and tracks which are
/// outstanding; a double free or a foreign page panics.
#[derive(Debug, Default)]
pub struct SimAllocator {
    pub next: u64,
    pub outstanding: BTreeSet<u64>,
    pub allocations: usize,
    /// Fail the allocation with this 0-based number.
    pub fail_at: Option<usize>,
    /// Offset added to every address (to make misaligned pages).
    pub skew: u64,
}

impl PageAllocator for SimAllocator {
    type Page = SimPage;

    fn allocate(&mut self) -> Result<SimPage, OutOfMemory> {
        if self.fail_at == Some(self.allocations) {
            return Err(OutOfMemory);
        }
        self.allocations += 1;
        self.next += 0x1000;
        let physical_address = 0x10_0000 + self.next + self.skew;
        assert!(self.outstanding.insert(physical_address));
        Ok(SimPage {
            physical_address,
            bytes: Box::new([0xcc; 4096]),
        })
    }

    fn free(&mut self, page: SimPage) {
        assert!(
            self.outstanding.remove(&page.physical_address),
            "double or foreign free"
        );
    }
}
