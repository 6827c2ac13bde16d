//! A simulated machine for tests and the fuzz target: processors that
//! follow the SDM's rules for what vmx-core does (VMXON needs CR4.VMXE, a
//! second VMXON fails with error 15, VMXOFF outside VMX operation is #UD,
//! CR4.VMXE cannot be cleared inside VMX operation), a platform that runs
//! work on them, and an allocator that tracks every page.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use vmx_core::{
    Cpu, CpuidResult, Fault, OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors,
    VmInstructionError, VmxOutcome,
};

/// IA32_VMX_BASIC of Bochs' corei7_skylake_x: revision 0x2b, 4 KiB
/// region, write-back, TRUE controls.
pub const BASIC: u64 = 0x00d8_1000_0000_002b;
/// CR0 and CR4 as Windows 10 runs (PE, MP, NE, WP, AM, PG; VMXE clear).
pub const CR0: u64 = 0x8005_0033;
/// See [`CR0`].
pub const CR4: u64 = 0x0035_06f8;
const CR4_VMXE: u64 = 1 << 13;

/// What goes wrong on one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trouble {
    /// Nothing.
    #[default]
    None,
    /// CPUID.1:ECX.VMX clear.
    NoVmx,
    /// IA32_FEATURE_CONTROL locked with VMX off.
    DisabledByFirmware,
    /// CR4.VMXE already set: another hypervisor.
    InUse,
    /// VMXON fails with VMfailInvalid.
    VmxonFails,
    /// VMXOFF fails with VMfailValid (23, dual-monitor SMM).
    VmxoffFails,
}

/// A simulated logical processor.
#[derive(Debug, Clone)]
pub struct FakeCpu {
    /// What goes wrong here.
    pub trouble: Trouble,
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// In VMX operation.
    pub in_vmx: bool,
    /// The VMXON pointer while in VMX operation.
    pub region: Option<u64>,
    /// Writes that real hardware would have faulted on.
    pub violations: usize,
}

impl FakeCpu {
    /// A processor with a trouble.
    #[must_use]
    pub fn new(trouble: Trouble) -> Self {
        Self {
            trouble,
            cr0: CR0,
            cr4: if trouble == Trouble::InUse {
                CR4 | CR4_VMXE
            } else {
                CR4
            },
            in_vmx: false,
            region: None,
            violations: 0,
        }
    }

    /// Whether the processor is as it was before anything happened.
    #[must_use]
    pub fn is_pristine(&self) -> bool {
        let cr4 = if self.trouble == Trouble::InUse {
            CR4 | CR4_VMXE
        } else {
            CR4
        };
        !self.in_vmx && self.cr0 == CR0 && self.cr4 == cr4 && self.violations == 0
    }
}

impl Cpu for FakeCpu {
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> CpuidResult {
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        let vmx = if self.trouble == Trouble::NoVmx {
            0
        } else {
            1 << 5
        };
        match leaf {
            // "GenuineIntel"
            0 => r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            1 => r(0x0005_0654, 0, 0x7ffa_fb9f | vmx, 0xbfeb_fbff),
            0x8000_0000 => r(0x8000_0008, 0, 0, 0),
            // 39-bit physical addresses.
            0x8000_0008 => r(0x3027, 0, 0, 0),
            _ => r(0, 0, 0, 0),
        }
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        match msr {
            0x3a if self.trouble == Trouble::DisabledByFirmware => Ok(0x1),
            0x3a => Ok(0x5),
            0x480 => Ok(BASIC),
            0x486 => Ok(0x8000_0021),
            0x487 => Ok(0xffff_ffff),
            0x488 => Ok(0x2000),
            0x489 => Ok(0x0037_27ff),
            0x481..=0x485 | 0x48a | 0x48d..=0x490 => Ok(0x0000_00ff_0000_0016),
            _ => Err(Fault::GeneralProtection),
        }
    }

    fn write_msr(&mut self, _msr: u32, _value: u64) -> Result<(), Fault> {
        // IA32_FEATURE_CONTROL is locked here: WRMSR raises #GP.
        self.violations += 1;
        Err(Fault::GeneralProtection)
    }

    fn read_cr0(&mut self) -> u64 {
        self.cr0
    }

    fn write_cr0(&mut self, value: u64) {
        self.cr0 = value;
    }

    fn read_cr4(&mut self) -> u64 {
        self.cr4
    }

    fn write_cr4(&mut self, value: u64) {
        if self.in_vmx && value & CR4_VMXE == 0 {
            self.violations += 1;
            return;
        }
        self.cr4 = value;
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        if self.cr4 & CR4_VMXE == 0 {
            return Err(Fault::InvalidOpcode);
        }
        if self.in_vmx {
            return Ok(VmxOutcome::FailValid(VmInstructionError::from_number(15)));
        }
        if self.trouble == Trouble::VmxonFails || region & 0xfff != 0 {
            return Ok(VmxOutcome::FailInvalid);
        }
        self.in_vmx = true;
        self.region = Some(region);
        Ok(VmxOutcome::Succeed)
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if self.trouble == Trouble::VmxoffFails {
            return Ok(VmxOutcome::FailValid(VmInstructionError::from_number(23)));
        }
        self.in_vmx = false;
        self.region = None;
        Ok(VmxOutcome::Succeed)
    }
}

/// The simulated machine's processors.
#[derive(Debug, Clone)]
pub struct FakeProcessors {
    /// The processors.
    pub cpus: Vec<FakeCpu>,
    /// A processor the platform cannot reach.
    pub unreachable: Option<usize>,
    /// How many times work ran.
    pub runs: usize,
}

impl FakeProcessors {
    /// `count` healthy processors.
    #[must_use]
    pub fn healthy(count: usize) -> Self {
        Self {
            cpus: (0..count).map(|_| FakeCpu::new(Trouble::None)).collect(),
            unreachable: None,
            runs: 0,
        }
    }

    /// `count` processors, processor `index` with `trouble`.
    #[must_use]
    pub fn with_trouble(count: usize, index: usize, trouble: Trouble) -> Self {
        let mut processors = Self::healthy(count);
        if let Some(cpu) = processors.cpus.get_mut(index) {
            *cpu = FakeCpu::new(trouble);
        }
        processors
    }
}

impl Processors for FakeProcessors {
    type Cpu = FakeCpu;

    fn count(&self) -> usize {
        self.cpus.len()
    }

    fn run_on(
        &mut self,
        index: usize,
        work: &mut dyn FnMut(&mut FakeCpu),
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
pub struct FakePage {
    address: u64,
    bytes: Box<[u8; 4096]>,
}

impl Page for FakePage {
    fn bytes_mut(&mut self) -> &mut [u8; 4096] {
        &mut self.bytes
    }

    fn physical_address(&self) -> u64 {
        self.address
    }
}

/// An allocator that knows which pages are out.
#[derive(Debug, Clone, Default)]
pub struct FakeAllocator {
    /// The physical addresses of the pages given out and not freed.
    pub live: BTreeSet<u64>,
    /// Pages given out so far.
    pub allocated: usize,
    /// Frees of a page that was not out.
    pub bad_frees: usize,
    /// The allocation (counting from 0) that fails, if any.
    pub fail_at: Option<usize>,
}

impl PageAllocator for FakeAllocator {
    type Page = FakePage;

    fn allocate(&mut self) -> Result<FakePage, OutOfMemory> {
        let number = self.allocated;
        if self.fail_at == Some(number) {
            return Err(OutOfMemory);
        }
        self.allocated += 1;
        let address = 0x10_0000 + 0x1000 * number as u64;
        self.live.insert(address);
        Ok(FakePage {
            address,
            bytes: Box::new([0xcc; 4096]),
        })
    }

    fn free(&mut self, page: FakePage) {
        if !self.live.remove(&page.address) {
            self.bad_frees += 1;
        }
    }
}
