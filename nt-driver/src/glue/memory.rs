//! VMXON regions: contiguous, cached (write-back), non-executable pages
//! with their physical addresses.
//!
//! `MmAllocateContiguousNodeMemory` with `PAGE_READWRITE` gives read/write,
//! no-execute memory, fully cached when neither `PAGE_NOCACHE` nor
//! `PAGE_WRITECOMBINE` is given (the write-back memory the VMXON region
//! needs); `MM_ANY_NODE_OK` takes memory from any NUMA node.
//! `MmAllocateContiguousMemorySpecifyCache` would give executable memory,
//! which HVCI and Driver Verifier flag. Either is freed with
//! `MmFreeContiguousMemory`.

use core::ptr::NonNull;

use vmx_core::region::VMXON_REGION_SIZE;
use vmx_core::{OutOfMemory, Page, PageAllocator};
use wdk_sys::ntddk::{
    MmAllocateContiguousNodeMemory, MmFreeContiguousMemory, MmGetPhysicalAddress,
};
use wdk_sys::{MM_ANY_NODE_OK, PAGE_READWRITE, PHYSICAL_ADDRESS};

/// One page from `MmAllocateContiguousNodeMemory`. It is freed
/// only by [`ContiguousAllocator::free`], never on drop: a page still in
/// use as a VMXON region must leak rather than be reused.
#[derive(Debug)]
pub struct ContiguousPage {
    virtual_address: NonNull<[u8; VMXON_REGION_SIZE]>,
    physical_address: u64,
}

impl Page for ContiguousPage {
    fn bytes_mut(&mut self) -> &mut [u8; VMXON_REGION_SIZE] {
        // SAFETY: a mapped, page-sized allocation that this value owns.
        unsafe { self.virtual_address.as_mut() }
    }

    fn physical_address(&self) -> u64 {
        self.physical_address
    }
}

/// Contiguous cached non-executable memory, page aligned by construction.
#[derive(Debug)]
pub struct ContiguousAllocator;

impl PageAllocator for ContiguousAllocator {
    type Page = ContiguousPage;

    fn allocate(&mut self) -> Result<ContiguousPage, OutOfMemory> {
        let lowest = PHYSICAL_ADDRESS { QuadPart: 0 };
        // MAXULONG64: any physical address; vmx-core checks the width.
        let highest = PHYSICAL_ADDRESS { QuadPart: -1 };
        // No boundary the allocation must not cross.
        let boundary = PHYSICAL_ADDRESS { QuadPart: 0 };
        // SAFETY: PASSIVE_LEVEL (IOCTL, power-callback and unload paths,
        // never inside the work at DISPATCH_LEVEL); plain arguments.
        let base = unsafe {
            MmAllocateContiguousNodeMemory(
                VMXON_REGION_SIZE as u64,
                lowest,
                highest,
                boundary,
                PAGE_READWRITE,
                MM_ANY_NODE_OK,
            )
        };
        let virtual_address =
            NonNull::new(base.cast::<[u8; VMXON_REGION_SIZE]>()).ok_or(OutOfMemory)?;
        // SAFETY: a valid, resident, non-paged virtual address.
        let physical = unsafe { MmGetPhysicalAddress(base) };
        // SAFETY: every bit pattern of the union is a valid i64.
        let physical_address = unsafe { physical.QuadPart } as u64;
        Ok(ContiguousPage {
            virtual_address,
            physical_address,
        })
    }

    fn free(&mut self, page: ContiguousPage) {
        // SAFETY: allocated by MmAllocateContiguousNodeMemory above
        // and given back exactly once (vmx-core's contract); PASSIVE_LEVEL,
        // which MmFreeContiguousMemory requires (IOCTL and unload paths).
        unsafe { MmFreeContiguousMemory(page.virtual_address.as_ptr().cast()) };
    }
}
