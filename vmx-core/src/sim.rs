//! A simulated machine for tests and fuzzing: processors that follow the
//! SDM's rules for the operations vmx-core uses, a platform that runs work
//! on them, and an allocator that tracks every page.
//!
//! Only with the `sim` feature (it allocates), which nothing but tests and
//! fuzz targets enable: vmx-core's own tests, nt-driver's tests and its
//! fuzz target all run on this one machine.
//!
//! The rules are the SDM's, checked independently of vmx-core: VMXON raises
//! #UD with CR4.VMXE clear, #GP outside the fixed bits or without
//! IA32_FEATURE_CONTROL locked and enabled, VMfailInvalid for a misaligned
//! or too-wide pointer, VMfail(15) in VMX root operation; VMXOFF, VMCLEAR
//! and VMPTRLD outside VMX operation are #UD. The processor tracks its
//! current-VMCS pointer as the SDM's "Conventions" need it: VMXON leaves it
//! invalid, VMPTRLD sets it, VMCLEAR of the current VMCS makes it invalid
//! again, and a VMfail is VMfailValid (ZF, an error number) only while it
//! is valid, VMfailInvalid (CF) otherwise, so VMXON in VMX root operation
//! without a VMPTRLD since is VMfailInvalid. (The simulation has no memory:
//! VMPTRLD does not check the region's revision identifier.) An operation
//! that real hardware would fault
//! on (WRMSR to a locked IA32_FEATURE_CONTROL, CR4.VMXE set without VMX,
//! CR0 or CR4 leaving the fixed bits inside VMX operation) is recorded in
//! [`SimCpu::violations`], which tests assert stays empty; giving back a
//! page twice, or one the allocator never gave out, panics.
//!
//! A test makes one [`Step`] go wrong ([`SimCpu::failing`],
//! [`Step::inject`]) and reads what happened from the public fields: the
//! registers, the operations in order ([`SimCpu::ops`]), how often work ran
//! ([`SimMachine::runs`]) and which pages are out
//! ([`SimAllocator::outstanding`]).
//!
//! ```
//! use vmx_core::sim::{SimAllocator, SimMachine, Step};
//! use vmx_core::{Error, Processor, enter_all};
//!
//! let (mut machine, mut allocator) = (SimMachine::new(2), SimAllocator::default());
//! Step::InUse.inject(1, &mut machine, &mut allocator);
//! let mut state = [Processor::new(), Processor::new()];
//! let failure = enter_all(&mut machine, &mut allocator, &mut state).unwrap_err();
//! assert_eq!((failure.processor, failure.error), (1, Error::InUse { cr4: 0x2020 }));
//! assert!(machine.cpus.iter().all(|cpu| cpu.is_pristine()));
//! assert!(allocator.outstanding.is_empty());
//! ```

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::cpu::{Cpu, CpuidResult, Fault};
use crate::instruction::{VmInstructionError, VmxOutcome};
use crate::platform::{OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors};

/// IA32_VMX_BASIC of Bochs' corei7_skylake_x: revision 0x2b, 4 KiB region,
/// write-back, TRUE controls.
pub const BASIC: u64 = 0x00d8_1000_0000_002b;
/// IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1 of Bochs' corei7_skylake_x.
pub const CR0_FIXED: (u64, u64) = (0x8000_0021, 0xffff_ffff);
/// IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1 of Bochs' corei7_skylake_x.
pub const CR4_FIXED: (u64, u64) = (0x2000, 0x0037_27ff);
/// Any other VMX control MSR (0x481 to 0x485, 0x48a, 0x48d to 0x490): a
/// placeholder with bits 1, 2 and 4 fixed to 1 and the low 8 bits allowed.
pub const CONTROLS: u64 = 0x0000_00ff_0000_0016;
/// CR0 in a kernel GRUB booted under Bochs (NE clear).
pub const GRUB_CR0: u64 = 0xe000_0011;
/// CR4 in a kernel GRUB booted under Bochs.
pub const GRUB_CR4: u64 = 0x20;

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const CR4_VMXE: u64 = 1 << 13;

/// One step that a test can make fail, on one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// CPUID.0 says AuthenticAMD.
    Vendor,
    /// CPUID.1:ECX.VMX clear.
    VmxBit,
    /// RDMSR of IA32_FEATURE_CONTROL raises #GP.
    FeatureControlRead,
    /// IA32_FEATURE_CONTROL locked with VMX off: disabled by firmware.
    FeatureControlDisabled,
    /// CR4.VMXE already set: another hypervisor.
    InUse,
    /// RDMSR of IA32_VMX_BASIC raises #GP.
    BasicRead,
    /// IA32_VMX_BASIC names an uncacheable memory type.
    BasicUnusable,
    /// RDMSR of the CR0/CR4 fixed-bit MSRs raises #GP.
    FixedBitsRead,
    /// IA32_FEATURE_CONTROL is unlocked and WRMSR to it raises #GP.
    LockWrite,
    /// IA32_FEATURE_CONTROL is unlocked and a write to it does not stick.
    LockReadback,
    /// VMXON fails with VMfailInvalid.
    VmxonFailInvalid,
    /// VMXON fails with VMfailValid (an undefined error number, 99).
    VmxonFailValid,
    /// VMXON raises #GP.
    VmxonFault,
    /// There is no page for the processor's VMXON region.
    Allocate,
    /// The platform cannot reach the processor.
    RunOn,
    /// VMXOFF fails with VMfailValid(23): dual-monitor treatment of SMM.
    VmxoffFailValid,
}

impl Step {
    /// The steps of entering VMX operation, in the order they happen.
    pub const ENTERING: [Self; 15] = [
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

    /// Every step: those of entering, then leaving's.
    pub const ALL: [Self; 16] = {
        let mut all = [Self::VmxoffFailValid; 16];
        let mut i = 0;
        while i < Self::ENTERING.len() {
            all[i] = Self::ENTERING[i];
            i += 1;
        }
        all
    };

    /// Makes this step fail for processor `index` of a machine that has not
    /// run anything yet: [`Step::Allocate`] fails the allocator's
    /// allocation number `index` (the page [`enter_all`] takes for that
    /// processor), [`Step::RunOn`] makes the processor unreachable, every
    /// other step makes the processor [`SimCpu::failing`].
    ///
    /// [`enter_all`]: crate::enter_all
    ///
    /// # Panics
    /// When the machine has no processor `index`.
    pub fn inject(self, index: usize, machine: &mut SimMachine, allocator: &mut SimAllocator) {
        assert!(index < machine.cpus.len(), "no processor {index}");
        match self {
            Self::Allocate => allocator.fail_at = Some(index),
            Self::RunOn => machine.unreachable = Some(index),
            _ => machine.cpus[index].fail(self),
        }
    }
}

/// A privileged operation, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// CPUID of a leaf.
    Cpuid(u32),
    /// RDMSR of an MSR.
    ReadMsr(u32),
    /// WRMSR of an MSR.
    WriteMsr(u32),
    /// MOV from CR0.
    ReadCr0,
    /// MOV to CR0.
    WriteCr0,
    /// MOV from CR4.
    ReadCr4,
    /// MOV to CR4.
    WriteCr4,
    /// VMXON.
    Vmxon,
    /// VMXOFF.
    Vmxoff,
    /// VMCLEAR.
    Vmclear,
    /// VMPTRLD.
    Vmptrld,
}

/// A simulated logical processor: Bochs' corei7_skylake_x with
/// IA32_FEATURE_CONTROL locked by firmware, VMX enabled.
#[derive(Debug, Clone)]
pub struct SimCpu {
    /// The vendor string CPUID.0 returns.
    pub vendor: [u8; 12],
    /// CPUID.1:ECX.VMX.
    pub vmx: bool,
    /// IA32_FEATURE_CONTROL.
    pub feature_control: u64,
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_VMX_BASIC.
    pub basic: u64,
    /// The physical-address width `CPUID.80000008H:EAX[7:0]` reports.
    pub physical_address_width: u8,
    /// CPUID.1:ECX.SMX (bit 6): Safer Mode Extensions.
    pub smx: bool,
    /// IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1.
    pub cr0_fixed: (u64, u64),
    /// IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1.
    pub cr4_fixed: (u64, u64),
    /// MSRs whose RDMSR raises #GP although the model has them (a broken
    /// nested hypervisor).
    pub faulting_msrs: Vec<u32>,
    /// In VMX operation.
    pub in_vmx: bool,
    /// The VMXON pointer while in VMX operation.
    pub region: Option<u64>,
    /// The current-VMCS pointer, `None` while it is invalid
    /// (FFFFFFFF_FFFFFFFFH).
    pub current_vmcs: Option<u64>,
    /// The step that goes wrong here, if any.
    pub fail: Option<Step>,
    /// Every privileged operation, in order.
    pub ops: Vec<Op>,
    /// Operations that real hardware would have faulted on.
    pub violations: Vec<&'static str>,
    /// CR0 and CR4 before anything ran.
    booted: (u64, u64),
}

impl SimCpu {
    /// The processor in a kernel GRUB booted under Bochs.
    #[must_use]
    pub fn skylake() -> Self {
        Self::booted(GRUB_CR0, GRUB_CR4)
    }

    /// The processor with CR0 and CR4 as an operating system set them up.
    #[must_use]
    pub fn booted(cr0: u64, cr4: u64) -> Self {
        Self {
            vendor: *b"GenuineIntel",
            vmx: true,
            feature_control: 0x5,
            cr0,
            cr4,
            basic: BASIC,
            physical_address_width: 39,
            smx: false,
            cr0_fixed: CR0_FIXED,
            cr4_fixed: CR4_FIXED,
            faulting_msrs: Vec::new(),
            in_vmx: false,
            region: None,
            current_vmcs: None,
            fail: None,
            ops: Vec::new(),
            violations: Vec::new(),
            booted: (cr0, cr4),
        }
    }

    /// The same processor with `step` going wrong (a step of the processor;
    /// [`Step::Allocate`] and [`Step::RunOn`] only mark it, see
    /// [`Step::inject`]).
    #[must_use]
    pub fn failing(mut self, step: Step) -> Self {
        self.fail(step);
        self
    }

    fn fail(&mut self, step: Step) {
        self.fail = Some(step);
        match step {
            Step::Vendor => self.vendor = *b"AuthenticAMD",
            Step::VmxBit => self.vmx = false,
            Step::FeatureControlDisabled => self.feature_control = 0x1,
            Step::LockWrite | Step::LockReadback => self.feature_control = 0x0,
            Step::InUse => self.cr4 |= CR4_VMXE,
            Step::BasicUnusable => self.basic &= !(0xf << 50),
            _ => {}
        }
        self.booted = (self.cr0, self.cr4);
    }

    /// Whether the processor is as it was before anything ran: outside VMX
    /// operation, CR0 and CR4 as booted, no violation.
    #[must_use]
    pub fn is_pristine(&self) -> bool {
        !self.in_vmx && (self.cr0, self.cr4) == self.booted && self.violations.is_empty()
    }

    /// How many times `op` ran.
    #[must_use]
    pub fn count(&self, op: Op) -> usize {
        self.ops.iter().filter(|&&o| o == op).count()
    }

    fn fails(&self, step: Step) -> bool {
        self.fail == Some(step)
    }

    /// VMfail(`error`), SDM "Conventions": VMfailValid when there is a
    /// current VMCS to hold the number, VMfailInvalid otherwise.
    fn vmfail(&self, error: VmInstructionError) -> VmxOutcome {
        if self.current_vmcs.is_some() {
            VmxOutcome::FailValid(error)
        } else {
            VmxOutcome::FailInvalid
        }
    }

    /// Whether a VMCS pointer is 4 KiB aligned and within the
    /// physical-address width.
    fn valid_pointer(&self, address: u64) -> bool {
        address & 0xfff == 0 && address >> self.physical_address_width == 0
    }
}

/// Whether `value` has every bit of `fixed0` set and none outside `fixed1`.
fn within((fixed0, fixed1): (u64, u64), value: u64) -> bool {
    (!value & fixed0) == 0 && (value & !fixed1) == 0
}

fn le(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
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
                ecx: (0x77fa_f39f | (u32::from(self.vmx) << 5)) & !(1 << 6)
                    | (u32::from(self.smx) << 6),
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
        if self.faulting_msrs.contains(&msr) {
            return gp;
        }
        match msr {
            0x3a if self.fails(Step::FeatureControlRead) => gp,
            0x3a => Ok(self.feature_control),
            0x480 if self.fails(Step::BasicRead) => gp,
            0x480 => Ok(self.basic),
            0x486..=0x489 if self.fails(Step::FixedBitsRead) => gp,
            0x486 => Ok(self.cr0_fixed.0),
            0x487 => Ok(self.cr0_fixed.1),
            0x488 => Ok(self.cr4_fixed.0),
            0x489 => Ok(self.cr4_fixed.1),
            0x481..=0x485 | 0x48a | 0x48d..=0x490 => Ok(CONTROLS),
            _ => gp,
        }
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault> {
        self.ops.push(Op::WriteMsr(msr));
        if msr != IA32_FEATURE_CONTROL {
            self.violations
                .push("WRMSR to an MSR the simulation does not have (#GP)");
            return Err(Fault::GeneralProtection);
        }
        if self.feature_control & 1 != 0 {
            self.violations
                .push("WRMSR to a locked IA32_FEATURE_CONTROL (#GP)");
            return Err(Fault::GeneralProtection);
        }
        if self.fails(Step::LockWrite) {
            return Err(Fault::GeneralProtection);
        }
        if value & 0x2 != 0 && !self.smx {
            self.violations
                .push("IA32_FEATURE_CONTROL bit 1 set on a processor without SMX (#GP)");
            return Err(Fault::GeneralProtection);
        }
        if value & 1 != 0 && value & 0x6 == 0 {
            self.violations
                .push("IA32_FEATURE_CONTROL locked without enabling VMX");
        }
        if !self.fails(Step::LockReadback) {
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
        if self.in_vmx && !within(self.cr0_fixed, value) {
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
        if value & CR4_VMXE != 0 && !self.vmx {
            self.violations.push("CR4.VMXE set without VMX (#GP)");
            return;
        }
        if self.in_vmx && value & CR4_VMXE == 0 {
            self.violations
                .push("CR4.VMXE cleared in VMX operation (#GP)");
            return;
        }
        if self.in_vmx && !within(self.cr4_fixed, value) {
            self.violations
                .push("CR4 left the fixed bits in VMX operation (#GP)");
            return;
        }
        self.cr4 = value;
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmxon);
        if self.cr4 & CR4_VMXE == 0 {
            return Err(Fault::InvalidOpcode);
        }
        if self.in_vmx {
            // VMfail(15): VMfailValid only with a current VMCS, and VMXON
            // leaves the current-VMCS pointer invalid.
            return Ok(self.vmfail(VmInstructionError::VmxonInVmxRoot));
        }
        let fixed_ok = within(self.cr0_fixed, self.cr0) && within(self.cr4_fixed, self.cr4);
        if !fixed_ok || self.feature_control & 0x5 != 0x5 {
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
                self.region = Some(region);
                self.current_vmcs = None;
                Ok(VmxOutcome::Succeed)
            }
        }
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmxoff);
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if self.fails(Step::VmxoffFailValid) {
            return Ok(VmxOutcome::FailValid(
                VmInstructionError::VmxoffUnderDualMonitor,
            ));
        }
        self.in_vmx = false;
        self.region = None;
        Ok(VmxOutcome::Succeed)
    }

    fn vmclear(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmclear);
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if !self.valid_pointer(region) {
            return Ok(self.vmfail(VmInstructionError::VmclearInvalidAddress));
        }
        if self.region == Some(region) {
            return Ok(self.vmfail(VmInstructionError::VmclearVmxonPointer));
        }
        if self.current_vmcs == Some(region) {
            self.current_vmcs = None;
        }
        Ok(VmxOutcome::Succeed)
    }

    fn vmptrld(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmptrld);
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if !self.valid_pointer(region) {
            return Ok(self.vmfail(VmInstructionError::VmptrldInvalidAddress));
        }
        if self.region == Some(region) {
            return Ok(self.vmfail(VmInstructionError::VmptrldVmxonPointer));
        }
        self.current_vmcs = Some(region);
        Ok(VmxOutcome::Succeed)
    }
}

/// A machine of simulated processors.
#[derive(Debug, Clone)]
pub struct SimMachine {
    /// The processors.
    pub cpus: Vec<SimCpu>,
    /// A processor the platform cannot reach.
    pub unreachable: Option<usize>,
    /// How many times work ran on a processor.
    pub runs: usize,
}

impl SimMachine {
    /// `count` processors as [`SimCpu::skylake`].
    #[must_use]
    pub fn new(count: usize) -> Self {
        Self::of(count, &SimCpu::skylake())
    }

    /// `count` processors like `cpu`.
    #[must_use]
    pub fn of(count: usize, cpu: &SimCpu) -> Self {
        Self {
            cpus: (0..count).map(|_| cpu.clone()).collect(),
            unreachable: None,
            runs: 0,
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
        self.runs += 1;
        work(cpu);
        Ok(())
    }
}

/// A page of the simulated allocator.
#[derive(Debug)]
pub struct SimPage {
    /// Its physical address.
    pub physical_address: u64,
    /// Its bytes.
    pub bytes: Box<[u8; 4096]>,
}

impl SimPage {
    /// A page at `physical_address`, filled with 0xcc (not zero, so that a
    /// region that is not cleared shows).
    #[must_use]
    pub fn new(physical_address: u64) -> Self {
        Self {
            physical_address,
            bytes: Box::new([0xcc; 4096]),
        }
    }
}

impl Page for SimPage {
    fn bytes_mut(&mut self) -> &mut [u8; 4096] {
        &mut self.bytes
    }

    fn physical_address(&self) -> u64 {
        self.physical_address
    }
}

/// Hands out pages at increasing physical addresses from 0x10_1000 and
/// tracks which are outstanding.
///
/// A double free or a foreign page panics: the code under test must never
/// do either.
#[derive(Debug, Clone, Default)]
pub struct SimAllocator {
    /// The physical addresses of the pages given out and not freed.
    pub outstanding: BTreeSet<u64>,
    /// Pages given out so far.
    pub allocations: usize,
    /// The allocation (counting from 0) that fails, if any.
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
        let number = self.allocations as u64;
        let physical_address = 0x10_0000 + 0x1000 * number + self.skew;
        assert!(
            self.outstanding.insert(physical_address),
            "page {physical_address:#x} given out twice"
        );
        Ok(SimPage::new(physical_address))
    }

    fn free(&mut self, page: SimPage) {
        assert!(
            self.outstanding.remove(&page.physical_address),
            "double or foreign free of {:#x}",
            page.physical_address
        );
    }
}
