//! # vmx-core
//!
//! Every decision of the first stage of an Intel VT-x hypervisor: whether a
//! processor can run VMX, how to switch it on, entering VMX operation on
//! every logical processor and leaving it again cleanly, correct to the
//! Intel SDM (Vol. 3C, "Discovering Support for VMX", "Enabling and Entering
//! VMX Operation", Appendix A).
//!
//! The crate knows no hardware: its logic runs against the [`Cpu`] trait
//! (CPUID, MSRs, CR0/CR4, VMXON/VMXOFF) and the platform traits
//! [`Processors`] and [`PageAllocator`]. `vmx-arch` implements [`Cpu`] with
//! real instructions; a Windows driver, a UEFI application or a bare-metal
//! kernel implements the platform traits. No `unsafe`, no allocation, no
//! `std`.
//!
//! ```
//! use vmx_core::{FeatureControl, FeatureControlState, FixedBits};
//!
//! // IA32_FEATURE_CONTROL as Bochs' BIOS leaves it: locked, VMX enabled.
//! assert_eq!(FeatureControl::from_raw(0x5).state(), FeatureControlState::Enabled);
//!
//! // CR0 as GRUB leaves it has NE clear; VMX operation needs it set.
//! let cr0_fixed = FixedBits::new(0x8000_0021, 0xffff_ffff);
//! assert!(!cr0_fixed.allows(0xe000_0011));
//! assert_eq!(cr0_fixed.adjust(0xe000_0011), 0xe000_0031);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod capabilities;
pub mod cpu;
pub mod cpuid;
pub mod diagnosis;
pub mod error;
pub mod feature_control;
pub mod fixed_bits;
pub mod inject;
pub mod instruction;
pub mod operation;
pub mod platform;
pub mod processors;
pub mod region;
pub mod vmx_basic;

#[cfg(test)]
mod tests;

pub use capabilities::{Capabilities, ControlMsr, VmxCapabilities};
#[cfg(any(test, feature = "mock"))]
pub use cpu::MockCpu;
pub use cpu::{Cpu, CpuidResult, Fault};
pub use cpuid::{CpuIdentity, Hypervisor, Vendor};
pub use diagnosis::{CpuObserver, MsrRead, Observe, ProcessorReport, Verdict, diagnose};
pub use error::{Error, Instruction, ProcessorError, Result};
pub use feature_control::{FeatureControl, FeatureControlState};
pub use fixed_bits::FixedBits;
pub use instruction::{VmInstructionError, VmxOutcome};
pub use operation::{EnterFailure, LeaveFailure, Processor, ProcessorStatus};
pub use platform::{OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors};
pub use processors::{enter_all, leave_all};
pub use vmx_basic::VmxBasic;
