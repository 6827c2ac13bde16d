//! # vmx-arch
//!
//! vmx-core's [`Cpu`](vmx_core::Cpu) trait over real x86-64 instructions.
#![no_std]
#![deny(missing_docs)]

pub mod cpuid;

pub use cpuid::cpuid;
