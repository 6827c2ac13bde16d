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
}
