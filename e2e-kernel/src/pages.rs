//! The pages VMXON and VMCS regions come from: a static pool of 4 KiB-aligned frames
//! in the kernel image. Under the identity paging of [`boot`](crate::boot)
//! a frame's physical address is its virtual address, and the memory is
//! write-back (the PAT and MTRR defaults for RAM), as VMXON regions need.

use core::sync::atomic::{AtomicBool, Ordering};

use vmx_core::region::VMXON_REGION_SIZE;
use vmx_core::{OutOfMemory, Page, PageAllocator};

use crate::smp::MAX_PROCESSORS;

/// One VMXON region per processor, plus a VMCS region and the VMXON region
/// of a second owner for the scenarios that need them.
const POOL_PAGES: usize = MAX_PROCESSORS + 2;

/// One 4 KiB page frame.
#[repr(C, align(4096))]
struct Frame([u8; VMXON_REGION_SIZE]);

/// The frames; only the one [`PagePool`] hands out references to them.
static mut FRAMES: [Frame; POOL_PAGES] = [const { Frame([0; VMXON_REGION_SIZE]) }; POOL_PAGES];

/// Set when the pool has been taken.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The allocator over [`FRAMES`].
#[derive(Debug)]
pub struct PagePool {
    in_use: [bool; POOL_PAGES],
}

impl PagePool {
    /// The pool, the first time; `None` afterwards, so that no two pools
    /// hand out the same frame.
    pub fn take() -> Option<Self> {
        (!TAKEN.swap(true, Ordering::AcqRel)).then_some(Self {
            in_use: [false; POOL_PAGES],
        })
    }

    /// How many pages are allocated and not yet freed.
    pub fn in_use(&self) -> usize {
        self.in_use.iter().filter(|&&used| used).count()
    }
}

/// A page of the pool.
#[derive(Debug)]
pub struct PoolPage {
    index: usize,
    bytes: &'static mut [u8; VMXON_REGION_SIZE],
}

impl Page for PoolPage {
    fn bytes_mut(&mut self) -> &mut [u8; VMXON_REGION_SIZE] {
        self.bytes
    }

    fn physical_address(&self) -> u64 {
        // Identity paging: the physical address is the virtual one.
        self.bytes.as_ptr() as u64
    }
}

impl PageAllocator for PagePool {
    type Page = PoolPage;

    fn allocate(&mut self) -> Result<PoolPage, OutOfMemory> {
        let index = self
            .in_use
            .iter()
            .position(|&used| !used)
            .ok_or(OutOfMemory)?;
        self.in_use[index] = true;
        let frame = (&raw mut FRAMES).cast::<Frame>().wrapping_add(index);
        // SAFETY: `frame` is element `index` of FRAMES; this pool is the only
        // one (`take`), and `in_use` hands each frame out once until it is
        // freed, so the reference is unique.
        let frame = unsafe { &mut *frame };
        Ok(PoolPage {
            index,
            bytes: &mut frame.0,
        })
    }

    fn free(&mut self, page: PoolPage) {
        self.in_use[page.index] = false;
    }
}
