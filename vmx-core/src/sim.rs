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
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use crate::cpu::{
    Cpu, CpuidResult, DescriptorTable, DescriptorTables, Fault, GuestRegisters, SegmentSelectors,
};
use crate::fields::{self, Field, FieldType};
use crate::instruction::{VmInstructionError, VmxOutcome};
use crate::platform::{OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors};

/// IA32_VMX_BASIC of Bochs' corei7_skylake_x: revision 0x2b, 4 KiB region,
/// write-back, TRUE controls.
pub const BASIC: u64 = 0x00d8_1000_0000_002b;
/// IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1 of Bochs' corei7_skylake_x.
pub const CR0_FIXED: (u64, u64) = (0x8000_0021, 0xffff_ffff);
/// IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1 of Bochs' corei7_skylake_x.
pub const CR4_FIXED: (u64, u64) = (0x2000, 0x0037_27ff);
/// The other VMX capability MSRs of Bochs' corei7_skylake_x (from an e2e
/// `vmx-dump/1` of Bochs 2.7): the control MSRs 0x481 to 0x484, 0x485
/// (IA32_VMX_MISC), 0x48a (VMCS_ENUM), 0x48b (PROCBASED_CTLS2), 0x48c
/// (EPT_VPID_CAP), the TRUE control MSRs 0x48d to 0x490, 0x491 (VMFUNC).
pub const VMX_MSRS: [(u32, u64); 14] = [
    (0x481, 0x7f_0000_0016),
    (0x482, 0xf7f9_fffe_0401_e172),
    (0x483, 0x7f_ffff_0003_6dff),
    (0x484, 0xffff_0000_11ff),
    (0x485, 0x6004_01e0),
    (0x48a, 0x34),
    (0x48b, 0x0217_7fff_0000_0000),
    (0x48c, 0x0f01_0633_4141),
    (0x48d, 0x7f_0000_0016),
    (0x48e, 0xf7f9_fffe_0400_6172),
    (0x48f, 0x7f_ffff_0003_6dfb),
    (0x490, 0xffff_0000_11fb),
    (0x491, 0x1),
    (0x277, 0x0007_0406_0007_0406),
];
/// IA32_EFER of a 64-bit kernel: LME and LMA.
pub const EFER: u64 = 0x500;
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
    /// A read of host state: CR3, selectors, descriptor tables, TR base.
    ReadState,
    /// VMWRITE of a field.
    Vmwrite(u32),
    /// VMREAD of a field.
    Vmread(u32),
    /// VMLAUNCH.
    Vmlaunch,
    /// VMRESUME.
    Vmresume,
}

/// The CR3 of the simulated kernel.
pub const CR3: u64 = 0x10_2000;
/// The selectors of the simulated kernel (a TSS at 0x20).
pub const SELECTORS: SegmentSelectors = SegmentSelectors {
    cs: 0x08,
    ss: 0x10,
    ds: 0x10,
    es: 0x10,
    fs: 0,
    gs: 0,
    tr: 0x20,
};
/// The simulated kernel's GDTR and IDTR.
pub const TABLES: DescriptorTables = DescriptorTables {
    gdtr: DescriptorTable {
        base: 0x10_1000,
        limit: 0x127,
    },
    idtr: DescriptorTable {
        base: 0x10_3000,
        limit: 0xfff,
    },
};
/// The simulated kernel's TSS.
pub const TR_BASE: u64 = 0x11_0000;

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
    /// MSR values that replace the model's (another model's capability
    /// MSRs, say).
    pub msr_overrides: Vec<(u32, u64)>,
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
    /// The selectors MOV from the segment registers and STR read.
    pub selectors: SegmentSelectors,
    /// The fields of every VMCS written so far, by region and encoding.
    pub vmcs_fields: BTreeMap<(u64, u32), u64>,
    /// The VMCS regions whose launch state is "launched".
    pub launched: BTreeSet<u64>,
    /// What the guest does, one VM exit per entry: the basic exit reason
    /// and the VM-exit instruction length. When the script is empty, the
    /// guest executes HLT (reason 12, length 1).
    pub guest_script: VecDeque<(u16, u32)>,
    /// VM entries that reached the guest.
    pub entries: usize,
    /// CR0 and CR4 before anything ran.
    booted: (u64, u64),
    /// The guest RIP at the last VM exit.
    last_exit_rip: u64,
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
            msr_overrides: Vec::new(),
            in_vmx: false,
            region: None,
            current_vmcs: None,
            fail: None,
            ops: Vec::new(),
            violations: Vec::new(),
            selectors: SELECTORS,
            vmcs_fields: BTreeMap::new(),
            launched: BTreeSet::new(),
            guest_script: VecDeque::new(),
            entries: 0,
            booted: (cr0, cr4),
            last_exit_rip: 0,
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

    /// A field of the current VMCS (0 if never written).
    #[must_use]
    pub fn field(&self, field: Field) -> u64 {
        self.current_vmcs
            .and_then(|region| self.vmcs_fields.get(&(region, field.encoding())).copied())
            .unwrap_or(0)
    }

    fn set_field(&mut self, field: Field, value: u64) {
        if let Some(region) = self.current_vmcs {
            self.vmcs_fields.insert((region, field.encoding()), value);
        }
    }

    fn msr_value(&self, msr: u32) -> u64 {
        self.msr_overrides
            .iter()
            .chain(VMX_MSRS.iter())
            .find(|&&(number, _)| number == msr)
            .map_or(0, |&(_, value)| value)
    }

    /// VM entry as the simulated processor makes it, checking a few of the
    /// SDM's rules on its own (not with vmx-core's checker): the controls
    /// against its TRUE capability MSRs (VMfailValid 7), host CR0/CR4
    /// against the fixed bits, CS and TR selectors not 0 and a 64-bit host
    /// (VMfailValid 8), guest CR0 against the fixed bits, RFLAGS bit 1
    /// set and reserved bits clear (exit reason 33), and the VMCS link
    /// pointer all ones (exit reason 33, qualification 4). Then the guest
    /// runs the next step of [`SimCpu::guest_script`].
    fn enter(&mut self, resume: bool) -> Result<VmxOutcome, Fault> {
        self.ops
            .push(if resume { Op::Vmresume } else { Op::Vmlaunch });
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        let Some(region) = self.current_vmcs else {
            return Ok(VmxOutcome::FailInvalid);
        };
        let launched = self.launched.contains(&region);
        if resume && !launched {
            return Ok(self.vmfail(VmInstructionError::VmresumeNonLaunchedVmcs));
        }
        if !resume && launched {
            return Ok(self.vmfail(VmInstructionError::VmlaunchNonClearVmcs));
        }
        let allowed = |msr: u64, value: u64| {
            let (must, may) = (msr & 0xffff_ffff, msr >> 32);
            value & must == must && value & !may == 0
        };
        let controls_ok = [
            (fields::PIN_BASED_VM_EXEC_CONTROL, 0x48d),
            (fields::CPU_BASED_VM_EXEC_CONTROL, 0x48e),
            (fields::VM_EXIT_CONTROLS, 0x48f),
            (fields::VM_ENTRY_CONTROLS, 0x490),
        ]
        .iter()
        .all(|&(field, msr)| allowed(self.msr_value(msr), self.field(field)));
        if !controls_ok {
            return Ok(self.vmfail(VmInstructionError::EntryInvalidControlFields));
        }
        let host_ok = within(self.cr0_fixed, self.field(fields::HOST_CR0))
            && within(self.cr4_fixed, self.field(fields::HOST_CR4))
            && self.field(fields::HOST_CS_SELECTOR) != 0
            && self.field(fields::HOST_TR_SELECTOR) != 0
            && self.field(fields::VM_EXIT_CONTROLS) & (1 << 9) != 0;
        if !host_ok {
            return Ok(self.vmfail(VmInstructionError::EntryInvalidHostStateFields));
        }
        let rflags = self.field(fields::GUEST_RFLAGS);
        let guest_ok = within(self.cr0_fixed, self.field(fields::GUEST_CR0))
            && rflags & 2 != 0
            && rflags & 0xffff_ffff_ffc0_8028 == 0;
        let link_ok = self.field(fields::VMCS_LINK_POINTER) == u64::MAX;
        if !guest_ok || !link_ok {
            self.set_field(fields::VM_EXIT_REASON, 0x8000_0021);
            self.set_field(fields::EXIT_QUALIFICATION, if guest_ok { 4 } else { 0 });
            return Ok(VmxOutcome::Succeed);
        }
        if resume {
            let instruction = self.field(fields::VM_EXIT_INSTRUCTION_LEN);
            if self.field(fields::GUEST_RIP) == self.last_exit_rip && instruction != 0 {
                self.violations
                    .push("VMRESUME at the instruction that exited: the guest repeats it forever");
            }
        }
        self.launched.insert(region);
        self.entries += 1;
        let (reason, length) = self.guest_script.pop_front().unwrap_or((12, 1));
        self.last_exit_rip = self.field(fields::GUEST_RIP);
        self.set_field(fields::VM_EXIT_REASON, u64::from(reason));
        self.set_field(fields::EXIT_QUALIFICATION, 0);
        self.set_field(fields::VM_EXIT_INSTRUCTION_LEN, u64::from(length));
        Ok(VmxOutcome::Succeed)
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
        if let Some(&(_, value)) = self.msr_overrides.iter().find(|&&(m, _)| m == msr) {
            return Ok(value);
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
            0xc000_0080 => Ok(EFER),
            0x174..=0x176 | 0xc000_0100 | 0xc000_0101 => Ok(0),
            _ => VMX_MSRS
                .iter()
                .find(|&&(number, _)| number == msr)
                .map_or(gp, |&(_, value)| Ok(value)),
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
        self.launched.remove(&region);
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

    fn read_cr3(&mut self) -> u64 {
        self.ops.push(Op::ReadState);
        CR3
    }

    fn read_segment_selectors(&mut self) -> SegmentSelectors {
        self.ops.push(Op::ReadState);
        self.selectors
    }

    fn read_descriptor_tables(&mut self) -> DescriptorTables {
        self.ops.push(Op::ReadState);
        TABLES
    }

    fn read_tr_base(&mut self) -> u64 {
        self.ops.push(Op::ReadState);
        if self.selectors.tr == 0 { 0 } else { TR_BASE }
    }

    fn vmwrite(&mut self, encoding: u32, value: u64) -> Result<VmxOutcome, Fault> {
        self.ops.push(Op::Vmwrite(encoding));
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if self.current_vmcs.is_none() {
            return Ok(VmxOutcome::FailInvalid);
        }
        let field = Field::from_encoding(encoding);
        if !field.is_well_formed() {
            return Ok(self.vmfail(VmInstructionError::UnsupportedVmcsComponent));
        }
        if field.field_type() == FieldType::ReadOnlyData {
            return Ok(self.vmfail(VmInstructionError::VmwriteReadOnlyComponent));
        }
        self.set_field(field, value & field.width().max());
        Ok(VmxOutcome::Succeed)
    }

    fn vmread(&mut self, encoding: u32) -> Result<(VmxOutcome, u64), Fault> {
        self.ops.push(Op::Vmread(encoding));
        if !self.in_vmx {
            return Err(Fault::InvalidOpcode);
        }
        if self.current_vmcs.is_none() {
            return Ok((VmxOutcome::FailInvalid, 0));
        }
        let field = Field::from_encoding(encoding);
        if !field.is_well_formed() {
            return Ok((self.vmfail(VmInstructionError::UnsupportedVmcsComponent), 0));
        }
        Ok((VmxOutcome::Succeed, self.field(field)))
    }

    fn vmlaunch(&mut self, _registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault> {
        self.enter(false)
    }

    fn vmresume(&mut self, _registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault> {
        self.enter(true)
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
