//! # vmx-arch
//!
//! vmx-core's [`Cpu`](vmx_core::Cpu) trait over real x86-64 instructions:
//! CPUID, RDMSR/WRMSR, MOV to and from CR0/CR4, VMXON/VMXOFF and
//! VMCLEAR/VMPTRLD with RFLAGS read back (and the VM-instruction error,
//! read with VMREAD, where there is one).
//!
//! Every `unsafe` operation of the project's ring-0 path lives here, one
//! operation per block, each with the reason it holds. Safe code cannot
//! construct a [`RealCpu`]: [`RealCpu::new`] is `unsafe`, because its
//! methods execute privileged instructions that only CPL 0 may run.
//!
//! With the `fault-recovery` feature (ELF targets), RDMSR, WRMSR, VMXON,
//! VMXOFF, VMCLEAR, VMPTRLD and VMREAD are *guarded*: each site is listed in the
//! `vmx_extable` section, and a kernel that owns its IDT can resume a
//! faulting guarded instruction with [`extable::recover`]; the instruction
//! then reports the fault ([`vmx_core::Fault`]) instead of crashing. Without
//! the feature (a Windows driver), a fault is fatal, which is why vmx-core
//! checks every precondition first.
//!
//! With the `preset-flags` feature (test builds), every VMX instruction
//! runs with the six arithmetic flags set first and the wrapper checks
//! that the flags it read were written by the instruction.
#![no_std]
#![deny(missing_docs)]

pub mod cpuid;
#[cfg(target_arch = "x86_64")]
pub mod extable;
#[cfg(target_arch = "x86_64")]
mod instructions;
#[cfg(target_arch = "x86_64")]
mod real_cpu;

pub use cpuid::cpuid;
#[cfg(all(target_arch = "x86_64", feature = "preset-flags"))]
pub use instructions::preset_then_nop;
#[cfg(target_arch = "x86_64")]
pub use real_cpu::RealCpu;
