//! # vmx-core
//!
//! Every decision of the first stage of an Intel VT-x hypervisor: whether a
//! processor can run VMX, how to switch it on, entering VMX operation on
//! every logical processor and leaving it again cleanly, correct to the
//! Intel SDM (Vol. 3C, "Discovering Support for VMX", "Enabling and Entering
//! VMX Operation", Appendix A).
//!
//! The crate knows no hardware: its logic runs against the [`Cpu`] trait
//! (CPUID, MSRs, CR0/CR4, VMXON/VMXOFF, VMCLEAR/VMPTRLD) and the platform traits
//! [`Processors`] and [`PageAllocator`]. `vmx-arch` implements [`Cpu`] with
//! real instructions; a Windows driver, a UEFI application or a bare-metal
//! kernel implements the platform traits. No `unsafe`, no allocation, no
//! `std`.
//!
//! For tests only, the `sim` feature adds the module `sim`: a simulated machine
//! (processors that follow the SDM's rules, a platform, an allocator) that
//! allocates. No product build enables it.
//!
//! ## Linking it into a hypervisor
//!
//! A platform supplies three things: a [`Cpu`] per processor (vmx-arch's
//! `RealCpu` on hardware), a [`Processors`] that runs work on processor
//! `i`, and a [`PageAllocator`] of write-back pages with their physical
//! addresses. Then [`enter_all`] enters VMX operation everywhere or
//! nowhere, and [`leave_all`] undoes it. Here the platform is one
//! simulated processor (a stand-in for the real thing):
//!
//! ```
//! use vmx_core::{enter_all, leave_all, Cpu, CpuidResult, Fault, OutOfMemory, Page,
//!                PageAllocator, Processor, ProcessorUnavailable, Processors, VmxOutcome};
//! # #[derive(Default)]
//! # struct Sim { cr0: u64, cr4: u64, on: bool }
//! # impl Cpu for Sim {
//! #     fn cpuid(&mut self, leaf: u32, _: u32) -> CpuidResult {
//! #         match leaf {
//! #             0 => CpuidResult { eax: 1, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69 },
//! #             1 => CpuidResult { ecx: 1 << 5, ..Default::default() },
//! #             _ => CpuidResult::default(),
//! #         }
//! #     }
//! #     fn read_msr(&mut self, msr: u32) -> Result<u64, Fault> {
//! #         Ok(match msr { 0x3a => 5, 0x480 => 0x00d8_1000_0000_002b, 0x486 => 0x8000_0021,
//! #             0x487 => 0xffff_ffff, 0x488 => 0x2000, 0x489 => 0x0037_27ff,
//! #             _ => return Err(Fault::GeneralProtection) })
//! #     }
//! #     fn write_msr(&mut self, _: u32, _: u64) -> Result<(), Fault> { Err(Fault::GeneralProtection) }
//! #     fn read_cr0(&mut self) -> u64 { self.cr0 }
//! #     fn write_cr0(&mut self, v: u64) { self.cr0 = v }
//! #     fn read_cr4(&mut self) -> u64 { self.cr4 }
//! #     fn write_cr4(&mut self, v: u64) { self.cr4 = v }
//! #     fn vmxon(&mut self, _: u64) -> Result<VmxOutcome, Fault> { self.on = true; Ok(VmxOutcome::Succeed) }
//! #     fn vmxoff(&mut self) -> Result<VmxOutcome, Fault> { self.on = false; Ok(VmxOutcome::Succeed) }
//! #     fn vmclear(&mut self, _: u64) -> Result<VmxOutcome, Fault> { Ok(VmxOutcome::Succeed) }
//! #     fn vmptrld(&mut self, _: u64) -> Result<VmxOutcome, Fault> { Ok(VmxOutcome::Succeed) }
//! # }
//! struct OneProcessor(Sim);
//! impl Processors for OneProcessor {
//!     type Cpu = Sim;
//!     fn count(&self) -> usize { 1 }
//!     fn run_on(&mut self, i: usize, work: &mut dyn FnMut(&mut Sim)) -> Result<(), ProcessorUnavailable> {
//!         if i != 0 { return Err(ProcessorUnavailable) }
//!         work(&mut self.0); // a real platform pins the thread to processor i first
//!         Ok(())
//!     }
//! }
//! struct Pages;
//! struct Frame(Box<[u8; 4096]>);
//! impl Page for Frame {
//!     fn bytes_mut(&mut self) -> &mut [u8; 4096] { &mut self.0 }
//!     fn physical_address(&self) -> u64 { 0x10_0000 } // identity-mapped, say
//! }
//! impl PageAllocator for Pages {
//!     type Page = Frame;
//!     fn allocate(&mut self) -> Result<Frame, OutOfMemory> { Ok(Frame(Box::new([0; 4096]))) }
//!     fn free(&mut self, _page: Frame) {}
//! }
//!
//! let mut platform = OneProcessor(Sim { cr0: 0xe000_0011, cr4: 0x20, on: false });
//! let mut state = [Processor::new()]; // one slot per processor, no allocation
//! assert_eq!(enter_all(&mut platform, &mut Pages, &mut state), Ok(1));
//! assert!(platform.0.on);
//! assert_eq!((platform.0.cr0, platform.0.cr4), (0xe000_0031, 0x2020)); // NE and VMXE set
//! assert_eq!(leave_all(&mut platform, &mut Pages, &mut state), Ok(1));
//! assert_eq!((platform.0.cr0, platform.0.cr4), (0xe000_0011, 0x20)); // as before
//! ```
//!
//! ## Decoding
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

// mockall's generated code names `std`; the `mock` feature is for other
// crates' tests, never a no_std build.
#[cfg(any(test, feature = "mock"))]
extern crate std;

#[cfg(any(test, feature = "sim"))]
extern crate alloc;

pub mod capabilities;
pub mod conformance;
pub mod counting;
pub mod cpu;
pub mod cpuid;
pub mod diagnosis;
pub mod error;
pub mod feature_control;
pub mod fixed_bits;
pub mod inject;
pub mod instruction;
pub mod linux_facts;
pub mod operation;
pub mod plan;
pub mod platform;
pub mod processors;
pub mod region;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod vmcs;
pub mod vmx_basic;

#[cfg(test)]
mod tests;

pub use capabilities::{Capabilities, ControlMsr, VmxCapabilities};
pub use conformance::Nonconformance;
pub use counting::{Counting, OperationCounts};
#[cfg(any(test, feature = "mock"))]
pub use cpu::MockCpu;
pub use cpu::{Cpu, CpuidResult, Fault};
pub use cpuid::{CpuIdentity, Hypervisor, Vendor};
pub use diagnosis::{CpuObserver, MsrRead, Observe, ProcessorReport, Verdict, diagnose};
pub use error::{Error, Instruction, ProcessorError, Result};
pub use feature_control::{FeatureControl, FeatureControlState};
pub use fixed_bits::FixedBits;
pub use instruction::{VmInstructionError, VmxOutcome};
pub use linux_facts::{LinuxFacts, Refined, refine};
pub use operation::{EnterFailure, LeaveFailure, Processor, ProcessorStatus};
pub use plan::{Decision, Missing, Plan, Readings, decide};
pub use platform::{OutOfMemory, Page, PageAllocator, ProcessorUnavailable, Processors};
pub use processors::{enter_all, leave_all};
pub use vmcs::Vmcs;
pub use vmx_basic::VmxBasic;
