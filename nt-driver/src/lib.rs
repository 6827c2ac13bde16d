//! # nt-driver
//!
//! The WDM driver that takes every logical processor into VMX operation on
//! request, and out again.
//!
//! The driver's decisions live in modules that compile and are tested on
//! any host, with the kernel's services behind traits:
//!
//! - [`dispatch`]: which IRP major function gets which status, and where a
//!   request's buffer is;
//! - [`ioctl`]: the validation of an IOCTL's code and buffer sizes;
//! - [`control`]: QUERY, ENTER, LEAVE, STATUS and unload, generic over
//!   vmx-core's [`Processors`](vmx_core::Processors) and
//!   [`PageAllocator`](vmx_core::PageAllocator);
//! - [`device`]: the device's state, one request at a time;
//! - [`power`]: sleep and hibernation, out of VMX operation and back;
//! - [`log`]: messages for `DbgPrintEx`, formatted without allocation;
//! - [`ntstatus`]: the NTSTATUS values used.
//!
//! The Windows glue (`glue/`, compiled only for a Windows driver build)
//! turns IRPs and power notifications into calls of these modules and
//! implements the platform traits with group affinity, DISPATCH_LEVEL
//! around the work on each processor, and contiguous no-execute memory: it
//! decides nothing.
#![cfg_attr(all(windows, not(test)), no_std)]
#![deny(missing_docs)]

extern crate alloc;

pub mod busy;
pub mod control;
pub mod device;
pub mod dispatch;
pub mod ioctl;
pub mod log;
pub mod names;
pub mod ntstatus;
pub mod power;

#[cfg(all(windows, not(test)))]
mod glue;

// The driver's panic handler (a bug check) and its allocator (non-paged
// pool), only in the driver build.
#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

#[cfg(all(windows, not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

pub use control::Control;
pub use device::Device;
pub use dispatch::{Completion, IrpParams};
pub use ntstatus::NtStatus;
