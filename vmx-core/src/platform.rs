//! Platform services that are not CPU instructions: running code on a given
//! logical processor, and pages of memory with their physical addresses.
//!
//! A Windows driver implements these with group affinity and contiguous
//! cached memory, the bare-metal test kernel with its AP mailboxes and a page
//! pool, a UEFI hypervisor with the MP services protocol.

use crate::cpu::Cpu;
use crate::region::VMXON_REGION_SIZE;

/// The platform could not run work on a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessorUnavailable;

/// The logical processors of the machine, and a way to run code on each.
pub trait Processors {
    /// The privileged operations of the processor the work runs on.
    type Cpu: Cpu;

    /// How many logical processors there are; they are numbered
    /// `0..count()`.
    fn count(&self) -> usize;

    /// Runs `work` on logical processor `index`, with that processor's
    /// [`Cpu`], and returns when it has finished.
    ///
    /// The work must not migrate: on a preemptive kernel the implementation
    /// pins the thread (or runs at an IRQL that forbids rescheduling) for the
    /// whole call.
    ///
    /// # Errors
    /// [`ProcessorUnavailable`] when `index` is out of range or the platform
    /// cannot reach that processor; `work` has not run then.
    fn run_on(
        &mut self,
        index: usize,
        work: &mut dyn FnMut(&mut Self::Cpu),
    ) -> Result<(), ProcessorUnavailable>;
}

/// One page of memory that a VMXON region can live in.
///
/// VMXON takes the region's *physical* address, the rest of the code writes
/// it through a virtual mapping: the page knows both.
pub trait Page {
    /// The page's bytes, through the virtual mapping.
    fn bytes_mut(&mut self) -> &mut [u8; VMXON_REGION_SIZE];

    /// The page's physical address.
    fn physical_address(&self) -> u64;
}

/// The page could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutOfMemory;

/// Gives out pages for VMXON regions and takes them back.
///
/// The SDM requires write-back memory for the region (the memory type in
/// IA32_VMX_BASIC, which vmx-core checks is write-back): allocate cached
/// memory. vmx-core checks the alignment and the physical-address width.
pub trait PageAllocator {
    /// The page type.
    type Page: Page;

    /// Allocates one 4 KiB page of write-back memory.
    ///
    /// # Errors
    /// [`OutOfMemory`] when no page could be had.
    fn allocate(&mut self) -> Result<Self::Page, OutOfMemory>;

    /// Gives a page back. vmx-core gives every page it allocated back
    /// exactly once.
    fn free(&mut self, page: Self::Page);
}
