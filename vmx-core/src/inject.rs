//! Fault injection for end-to-end tests on real or emulated processors: a
//! [`Cpu`] wrapper that makes one step go wrong the way a broken platform
//! would, so that the processor's own reaction (VMfailInvalid, #UD) and
//! vmx-core's rollback can be observed. Nothing here is used on a normal
//! path; a front end enables it only when a test asks.

use crate::cpu::{Cpu, CpuidResult, Fault};
use crate::fixed_bits::CR4_VMXE;
use crate::instruction::VmxOutcome;
use crate::vmx_basic::IA32_VMX_BASIC;

/// Which step to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Injection {
    /// Nothing: the wrapper passes every operation through.
    #[default]
    None,
    /// IA32_VMX_BASIC reads with a different revision identifier, so the
    /// VMXON region carries a wrong one: VMXON must fail with
    /// VMfailInvalid.
    WrongRevisionId,
    /// Writes to CR4 drop VMXE, so VMXON runs with CR4.VMXE clear: VMXON
    /// must raise #UD.
    DropVmxe,
}

impl Injection {
    /// Parses the names used on command lines: `none`,
    /// `wrong-revision-id`, `drop-vmxe`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "wrong-revision-id" => Some(Self::WrongRevisionId),
            "drop-vmxe" => Some(Self::DropVmxe),
            _ => None,
        }
    }

    /// The name [`Injection::from_name`] parses.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::WrongRevisionId => "wrong-revision-id",
            Self::DropVmxe => "drop-vmxe",
        }
    }
}

/// A [`Cpu`] that applies an [`Injection`] to another.
#[derive(Debug)]
pub struct Injecting<C> {
    inner: C,
    injection: Injection,
}

impl<C: Cpu> Injecting<C> {
    /// Wraps `inner`.
    pub const fn new(inner: C, injection: Injection) -> Self {
        Self { inner, injection }
    }

    /// The wrapped CPU.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: Cpu> Cpu for Injecting<C> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.inner.cpuid(leaf, subleaf)
    }

    fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        let value = self.inner.read_msr(msr)?;
        if self.injection == Injection::WrongRevisionId && msr == IA32_VMX_BASIC {
            // Flip a bit of the revision identifier (bits 30:0), keep the rest.
            return Ok(value ^ 0x4000_0000);
        }
        Ok(value)
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
        let value = if self.injection == Injection::DropVmxe {
            value & !CR4_VMXE
        } else {
            value
        };
        self.inner.write_cr4(value);
    }

    fn vmxon(&mut self, region: u64) -> Result<VmxOutcome, Fault> {
        self.inner.vmxon(region)
    }

    fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> {
        self.inner.vmxoff()
    }
}
