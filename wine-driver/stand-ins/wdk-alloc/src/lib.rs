//! TEST ONLY: stands in for wdk-alloc 0.4.2 in the Wine build: the same
//! global allocator as wdk-alloc, non-paged pool from `ExAllocatePool2`
//! with the tag `rust`, freed with `ExFreePool`. (Neither Wine 8 nor
//! mingw-w64 has ExAllocatePool2: the test image defines it over
//! ExAllocatePoolWithTag.) Through this crate the image links every
//! test-only substitute of `wine-substitutes`.
#![no_std]

// Linked for its `#[no_mangle]` functions, which the glue calls by name.
use wine_substitutes as _;

use core::alloc::{GlobalAlloc, Layout};

use wdk_sys::ntddk::{ExAllocatePool2, ExFreePool};
use wdk_sys::{POOL_FLAG_NON_PAGED, SIZE_T, ULONG};

/// The global allocator of a driver: non-paged pool.
#[derive(Debug)]
pub struct WdkAllocator;

/// wdk-alloc's pool tag, `rust` as a debugger shows it.
const RUST_TAG: ULONG = u32::from_ne_bytes(*b"rust");

/// The alignment pool allocations have (16 bytes on x64). As in
/// wdk-alloc, a larger one is not supported: such a layout gets null.
const POOL_ALIGNMENT: usize = 16;

// SAFETY: allocation never unwinds (panic = abort); alloc returns null or a
// block of at least `layout.size()` bytes aligned to at most 16, which
// dealloc gives back to the pool it came from.
unsafe impl GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > POOL_ALIGNMENT {
            return core::ptr::null_mut();
        }
        // SAFETY: callable at IRQL <= DISPATCH_LEVEL for non-paged pool.
        unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size() as SIZE_T, RUST_TAG) }.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: a block from `alloc` above (GlobalAlloc's contract).
        unsafe { ExFreePool(ptr.cast()) };
    }
}
