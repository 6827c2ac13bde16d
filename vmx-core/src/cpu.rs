//! The hardware seam: the few privileged operations that entering VMX
//! operation needs, as a trait that a real processor (vmx-arch), a mock or a
//! recording of one can implement.

use crate::instruction::VmxOutcome;

/// The four registers CPUID returns for one leaf and subleaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CpuidResult {
    /// EAX after CPUID.
    pub eax: u32,
    /// EBX after CPUID.
    pub ebx: u32,
    /// ECX after CPUID.
    pub ecx: u32,
    /// EDX after CPUID.
    pub edx: u32,
}

/// An exception an instruction raised, reported by a backend that can catch
/// it (a test kernel with its own IDT, or an MSR device file that answers
/// `EIO`). A backend that cannot catch faults never returns one: for it a
/// fault is fatal, which is why vmx-core checks every architectural
/// precondition before it executes an instruction that could fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// #UD, invalid opcode (vector 6): e.g. VMXON with CR4.VMXE clear,
    /// VMXOFF, VMCLEAR or VMPTRLD outside VMX operation.
    InvalidOpcode,
    /// #GP(0), general protection (vector 13): e.g. RDMSR of an MSR that
    /// does not exist, WRMSR to a locked IA32_FEATURE_CONTROL, VMXON with CR0
    /// or CR4 outside the fixed bits.
    GeneralProtection,
    /// Any other vector.
    Other(u8),
}

impl Fault {
    /// The fault for an exception vector number.
    #[must_use]
    pub const fn from_vector(vector: u8) -> Self {
        match vector {
            6 => Self::InvalidOpcode,
            13 => Self::GeneralProtection,
            other => Self::Other(other),
        }
    }

    /// The exception vector number.
    #[must_use]
    pub const fn vector(self) -> u8 {
        match self {
            Self::InvalidOpcode => 6,
            Self::GeneralProtection => 13,
            Self::Other(vector) => vector,
        }
    }

    /// The SDM mnemonic: `#UD`, `#GP` or `#<vector>`.
    #[must_use]
    pub const fn mnemonic(self) -> &'static str {
        match self {
            Self::InvalidOpcode => "#UD",
            Self::GeneralProtection => "#GP",
            Self::Other(0) => "#DE",
            Self::Other(14) => "#PF",
            Self::Other(_) => "#exception",
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Other(vector) if !matches!(vector, 0 | 14) => write!(f, "exception {vector}"),
            _ => write!(f, "{} (vector {})", self.mnemonic(), self.vector()),
        }
    }
}

/// The segment selectors of the running processor (MOV from CS, SS, DS,
/// ES, FS, GS; STR for TR), as the host-state area wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SegmentSelectors {
    /// CS.
    pub cs: u16,
    /// SS.
    pub ss: u16,
    /// DS.
    pub ds: u16,
    /// ES.
    pub es: u16,
    /// FS.
    pub fs: u16,
    /// GS.
    pub gs: u16,
    /// TR (STR).
    pub tr: u16,
}

/// A descriptor-table register as SGDT or SIDT stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DescriptorTable {
    /// The linear base address.
    pub base: u64,
    /// The limit.
    pub limit: u16,
}

/// GDTR and IDTR of the running processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DescriptorTables {
    /// GDTR (SGDT).
    pub gdtr: DescriptorTable,
    /// IDTR (SIDT).
    pub idtr: DescriptorTable,
}

/// The guest's general-purpose registers other than RSP (which the VMCS
/// holds): loaded before VM entry and saved at VM exit by the backend, as
/// the processor switches none of them. `repr(C)` because assembly reads
/// and writes it at fixed offsets (8 bytes each, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(C)]
pub struct GuestRegisters {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

/// One logical processor's privileged operations.
///
/// Every method acts on the processor the code runs on; the platform's
/// [`Processors`](crate::Processors) puts the caller there. Implementations
/// execute the instruction and report its architectural outcome; they make no
/// decisions (those are vmx-core's).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Cpu {
    /// CPUID with EAX = `leaf` and ECX = `subleaf`.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult;

    /// RDMSR.
    ///
    /// # Errors
    /// The fault the instruction raised (an MSR that does not exist raises
    /// #GP), where the backend can catch it.
    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault>;

    /// WRMSR.
    ///
    /// # Errors
    /// The fault the instruction raised (e.g. #GP writing a locked
    /// IA32_FEATURE_CONTROL), where the backend can catch it.
    fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), Fault>;

    /// MOV from CR0.
    fn read_cr0(&mut self) -> u64;

    /// MOV to CR0.
    fn write_cr0(&mut self, value: u64);

    /// MOV from CR4.
    fn read_cr4(&mut self) -> u64;

    /// MOV to CR4.
    fn write_cr4(&mut self, value: u64);

    /// VMXON with the physical address of a prepared VMXON region.
    ///
    /// # Errors
    /// The fault VMXON raised (#UD with CR4.VMXE clear, #GP outside the fixed
    /// bits or with IA32_FEATURE_CONTROL not enabling VMX), where the backend
    /// can catch it.
    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault>;

    /// VMXOFF.
    ///
    /// # Errors
    /// The fault VMXOFF raised (#UD outside VMX operation), where the backend
    /// can catch it.
    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault>;

    /// VMCLEAR with the physical address of a VMCS region: its data is
    /// written to the region, its launch state becomes "clear", and it is
    /// no longer current if it was.
    ///
    /// # Errors
    /// The fault VMCLEAR raised (#UD outside VMX operation), where the
    /// backend can catch it.
    fn vmclear(&mut self, region: u64) -> Result<VmxOutcome, Fault>;

    /// VMPTRLD with the physical address of a VMCS region: it becomes the
    /// current VMCS.
    ///
    /// # Errors
    /// The fault VMPTRLD raised (#UD outside VMX operation), where the
    /// backend can catch it.
    fn vmptrld(&mut self, region: u64) -> Result<VmxOutcome, Fault>;

    /// MOV from CR3.
    fn read_cr3(&mut self) -> u64;

    /// The segment selectors (MOV from the segment registers, STR).
    fn read_segment_selectors(&mut self) -> SegmentSelectors;

    /// GDTR and IDTR (SGDT, SIDT).
    fn read_descriptor_tables(&mut self) -> DescriptorTables;

    /// The base address of the TSS that TR selects, from its descriptor in
    /// the GDT (no instruction reads it; 0 when TR is 0).
    fn read_tr_base(&mut self) -> u64;

    /// VMWRITE of `value` to the current VMCS's field `field` (its
    /// encoding).
    ///
    /// # Errors
    /// The fault VMWRITE raised (#UD outside VMX operation), where the
    /// backend can catch it.
    fn vmwrite(&mut self, field: u32, value: u64) -> Result<VmxOutcome, Fault>;

    /// VMREAD of the current VMCS's field `field`: the outcome and, when it
    /// is [`VmxOutcome::Succeed`], the value (0 otherwise).
    ///
    /// # Errors
    /// The fault VMREAD raised (#UD outside VMX operation), where the
    /// backend can catch it.
    fn vmread(&mut self, field: u32) -> Result<(VmxOutcome, u64), Fault>;

    /// VMLAUNCH of the current VMCS with the guest's general registers
    /// `registers`. The backend writes the host-state RSP and RIP fields
    /// (its own stack and VM-exit entry point) just before. Returns
    /// [`VmxOutcome::Succeed`] when VM entry began and a VM exit (or a
    /// VM-entry failure while loading guest state, which is reported as a
    /// VM exit) has since brought control back, with the guest's registers
    /// saved in `registers`; VMfailInvalid or VMfailValid when VMLAUNCH
    /// itself failed (`registers` unchanged).
    ///
    /// # Errors
    /// The fault VMLAUNCH raised, where the backend can catch it.
    fn vmlaunch(&mut self, registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault>;

    /// VMRESUME of the current, launched VMCS; otherwise as
    /// [`Cpu::vmlaunch`].
    ///
    /// # Errors
    /// The fault VMRESUME raised, where the backend can catch it.
    fn vmresume(&mut self, registers: &mut GuestRegisters) -> Result<VmxOutcome, Fault>;
}
