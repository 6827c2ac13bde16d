//! TEST ONLY substitutes, linked into the Wine test image
//! (wine-driver/image, through the wdk-alloc stand-in) and nothing else. Each one is a real implementation over what Wine 8 has, with the
//! WDK's prototype; where Wine cannot do what the function promises, it
//! fails the way the function documents failure (NULL, an error status)
//! rather than pretend.
//!
//! | function | why a substitute | over |
//! |---|---|---|
//! | `WdmlibIoCreateDeviceSecure` | in the WDK's static wdmsec.lib, absent here | `IoCreateDevice`: **no SDDL** |
//! | `KeGetProcessorNumberFromIndex` | absent in Wine 8 | one group: index = number |
//! | `KeSetSystemGroupAffinityThread` | absent in Wine 8 | `KeSetSystemAffinityThreadEx` (group 0) |
//! | `KeRevertToUserGroupAffinityThread` | absent in Wine 8 | `KeRevertToUserAffinityThreadEx` |
//! | `MmAllocateContiguousMemorySpecifyCache` | returns NULL in Wine 8 | a page-aligned pool block |
//! | `MmAllocateContiguousNodeMemory` | absent in Wine 8 and mingw-w64 | the same |
//! | `MmFreeContiguousMemory` | aborts in Wine 8 | frees that block (blocks outstanding logged on each change) |
//! | `ExAllocatePool2` | absent in Wine 8 and mingw-w64 | `ExAllocatePoolWithTag`, zeroed |
//! | `ExCreateCallback`, `ExRegisterCallback`, `ExUnregisterCallback`, `ExNotifyCallback`, `ObfDereferenceObject` | stubs in Wine 8 (no object) | [`callback`]: `\Callback\PowerState` as a callback object in the image; other objects to Wine's `ObDereferenceObject` |
//! | `IofCompleteRequest` | Wine has no power manager to notify that object | [`callback`]: Wine's `IoCompleteRequest`, with a test hook that delivers a power notification for one test request |
//!
//! Being defined in an rlib that comes before libntoskrnl.a on the link
//! line, these take precedence over its import entries of the same names:
//! the image imports none of them (`cargo xtask wine` checks).
#![no_std]

pub mod callback;

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID;
use wdk_sys::_MEMORY_CACHING_TYPE::MmCached;
use wdk_sys::_POOL_TYPE::NonPagedPool;
use wdk_sys::ntddk::{
    DbgPrintEx, ExFreePoolWithTag, IoCreateDevice, KeQueryActiveProcessorCountEx,
    KeRevertToUserAffinityThreadEx, KeSetSystemAffinityThreadEx,
};
use wdk_sys::{
    DEVICE_OBJECT, DPFLTR_ERROR_LEVEL, DRIVER_OBJECT, GROUP_AFFINITY, GUID, MEMORY_CACHING_TYPE,
    NODE_REQUIREMENT, NTSTATUS, PAGE_READWRITE, PHYSICAL_ADDRESS, POOL_FLAG_NON_PAGED,
    POOL_FLAG_UNINITIALIZED, POOL_FLAGS, POOL_TYPE, PROCESSOR_NUMBER, PVOID, SIZE_T,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG, UNICODE_STRING,
};

unsafe extern "C" {
    /// `PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T
    /// NumberOfBytes, ULONG Tag)`: the allocator Wine has. wdk-build
    /// blocklists it (deprecated), so the generated bindings, like wdk-sys,
    /// do not declare it: declared here for these substitutes only.
    fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
}

/// The group Wine has: one, with every processor in it.
const GROUP: u16 = 0;

/// The pool tag of the page-aligned blocks, `wine` in a debugger.
const PAGE_TAG: ULONG = u32::from_ne_bytes(*b"wine");

/// The page size and alignment of "contiguous" blocks.
const PAGE_SIZE: usize = 4096;

fn log(text: &core::ffi::CStr) {
    // SAFETY: a constant "%s" format and a NUL-terminated argument.
    let _ = unsafe {
        DbgPrintEx(
            DPFLTR_IHVDRIVER_ID as u32,
            DPFLTR_ERROR_LEVEL,
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    };
}

/// TEST ONLY substitute for wdmsec.lib's `WdmlibIoCreateDeviceSecure`:
/// `IoCreateDevice` with the same arguments, **without** the SDDL and the
/// class GUID, so the device is not restricted to SYSTEM and
/// Administrators. It says so first: it runs at load, from DriverEntry.
///
/// # Safety
/// As IoCreateDevice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn WdmlibIoCreateDeviceSecure(
    driver: *mut DRIVER_OBJECT,
    extension_size: ULONG,
    name: *mut UNICODE_STRING,
    device_type: ULONG,
    characteristics: ULONG,
    exclusive: u8,
    _sddl: *const UNICODE_STRING,
    _class: *const GUID,
    device: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    log(
        c"nt-driver: TEST BUILD nt_driver_wine_test_no_sddl.sys: WdmlibIoCreateDeviceSecure \
          is a substitute over IoCreateDevice: the device has NO SDDL (anyone may open it); \
          never deploy this image\n",
    );
    // SAFETY: the caller's arguments, passed on.
    unsafe {
        IoCreateDevice(
            driver,
            extension_size,
            name,
            device_type,
            characteristics,
            exclusive,
            device,
        )
    }
}

/// TEST ONLY substitute for `KeGetProcessorNumberFromIndex`: Wine has one
/// processor group, so processor `index` is number `index` of group 0.
///
/// # Safety
/// `number` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeGetProcessorNumberFromIndex(
    index: ULONG,
    number: *mut PROCESSOR_NUMBER,
) -> NTSTATUS {
    // SAFETY: no precondition.
    let count = unsafe { KeQueryActiveProcessorCountEx(GROUP) };
    let Ok(small) = u8::try_from(index) else {
        return STATUS_INVALID_PARAMETER;
    };
    if index >= count || number.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: valid for a write, by the caller's contract.
    unsafe {
        number.write(PROCESSOR_NUMBER {
            Group: GROUP,
            Number: small,
            Reserved: 0,
        });
    }
    STATUS_SUCCESS
}

/// TEST ONLY substitute for `KeSetSystemGroupAffinityThread` over Wine's
/// single-group `KeSetSystemAffinityThreadEx`, which binds the driver
/// host's thread to those processors (a Linux CPU affinity). Wine has
/// group 0 only: an affinity in another group is a caller bug, and bug
/// checks, as a real kernel does for an invalid group.
///
/// # Safety
/// `affinity` is valid; `previous` is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeSetSystemGroupAffinityThread(
    affinity: *mut GROUP_AFFINITY,
    previous: *mut GROUP_AFFINITY,
) {
    // SAFETY: valid, by the caller's contract.
    let requested = unsafe { &*affinity };
    if requested.Group != GROUP || requested.Mask == 0 {
        log(c"nt-driver: TEST BUILD: KeSetSystemGroupAffinityThread: not group 0, or no processor\n");
        // SAFETY: no precondition.
        unsafe { wdk_sys::ntddk::KeBugCheckEx(0x5, u64::from(requested.Group), 0, 0, 0) };
    }
    // SAFETY: a non-empty affinity of group 0.
    let before = unsafe { KeSetSystemAffinityThreadEx(requested.Mask) };
    if !previous.is_null() {
        // SAFETY: valid for a write, by the caller's contract.
        unsafe {
            previous.write(GROUP_AFFINITY {
                Mask: before,
                Group: GROUP,
                Reserved: [0; 3],
            });
        }
    }
}

/// TEST ONLY substitute for `KeRevertToUserGroupAffinityThread` over Wine's
/// `KeRevertToUserAffinityThreadEx`.
///
/// # Safety
/// `previous` is what [`KeSetSystemGroupAffinityThread`] saved.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeRevertToUserGroupAffinityThread(previous: *mut GROUP_AFFINITY) {
    // SAFETY: valid, by the caller's contract.
    let mask = unsafe { (*previous).Mask };
    // SAFETY: an affinity this thread had.
    unsafe { KeRevertToUserAffinityThreadEx(mask) };
}

/// Blocks of [`allocate_pages`] not yet freed. Each change is logged
/// (`nt-driver: TEST BUILD: contiguous memory allocated: 1 blocks
/// outstanding`), so that `cargo xtask wine` can check that a refused
/// ENTER leaves nothing allocated.
static OUTSTANDING_BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// Counts a block allocated (`true`) or freed, and logs the count after.
fn count_block(allocated: bool) {
    let after = if allocated {
        OUTSTANDING_BLOCKS.fetch_add(1, Ordering::AcqRel) + 1
    } else {
        OUTSTANDING_BLOCKS.fetch_sub(1, Ordering::AcqRel) - 1
    };
    let event = if allocated { "allocated" } else { "freed" };
    callback::log_test_line(format_args!(
        "contiguous memory {event}: {after} blocks outstanding"
    ));
}

/// A page-aligned block of `bytes` from non-paged pool, at or below
/// `highest`: what "contiguous" memory can be in Wine, where the driver
/// runs in a process and MmGetPhysicalAddress returns the virtual address.
/// The pool block's own address is kept in the 8 bytes before the page.
fn allocate_pages(bytes: SIZE_T, highest: PHYSICAL_ADDRESS) -> PVOID {
    let Ok(bytes) = usize::try_from(bytes) else {
        return ptr::null_mut();
    };
    let Some(total) = bytes.checked_add(PAGE_SIZE) else {
        return ptr::null_mut();
    };
    if bytes == 0 {
        return ptr::null_mut();
    }
    // SAFETY: non-paged pool at PASSIVE_LEVEL.
    let block = unsafe { ExAllocatePoolWithTag(NonPagedPool, total as SIZE_T, PAGE_TAG) };
    if block.is_null() {
        return ptr::null_mut();
    }
    let start = block as usize;
    // At least 8 bytes after the block's start: the pool aligns to 16.
    let page = (start + 8).next_multiple_of(PAGE_SIZE);
    // SAFETY: every bit pattern of the union is a valid i64.
    let highest = unsafe { highest.QuadPart } as u64;
    if (page + bytes - 1) as u64 > highest {
        // SAFETY: the block allocated above, with its tag.
        unsafe { ExFreePoolWithTag(block, PAGE_TAG) };
        return ptr::null_mut();
    }
    let page = block.cast::<u8>().wrapping_add(page - start);
    let header = page.wrapping_sub(8).cast::<usize>();
    // SAFETY: page - 8 >= start: within the block, 8-byte aligned.
    unsafe { header.write(start) };
    // SAFETY: `bytes` bytes from `page` lie within the block (total =
    // bytes + PAGE_SIZE and page - start <= PAGE_SIZE).
    unsafe { page.write_bytes(0, bytes) };
    count_block(true);
    page.cast()
}

/// TEST ONLY substitute for `MmAllocateContiguousMemorySpecifyCache`
/// (Wine 8's returns NULL): [`allocate_pages`]. Pool memory is cached, so
/// any other caching type gets NULL.
///
/// # Safety
/// PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MmAllocateContiguousMemorySpecifyCache(
    bytes: SIZE_T,
    _lowest: PHYSICAL_ADDRESS,
    highest: PHYSICAL_ADDRESS,
    _boundary: PHYSICAL_ADDRESS,
    cache: MEMORY_CACHING_TYPE,
) -> PVOID {
    if cache != MmCached {
        return ptr::null_mut();
    }
    allocate_pages(bytes, highest)
}

/// TEST ONLY substitute for `MmAllocateContiguousNodeMemory` (absent in
/// Wine 8): [`allocate_pages`], read-write and not executable, which is
/// what pool memory is; any other protection gets NULL. Wine has one node.
///
/// # Safety
/// PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MmAllocateContiguousNodeMemory(
    bytes: SIZE_T,
    _lowest: PHYSICAL_ADDRESS,
    highest: PHYSICAL_ADDRESS,
    _boundary: PHYSICAL_ADDRESS,
    protect: ULONG,
    _node: NODE_REQUIREMENT,
) -> PVOID {
    if protect != PAGE_READWRITE {
        return ptr::null_mut();
    }
    allocate_pages(bytes, highest)
}

/// TEST ONLY substitute for `MmFreeContiguousMemory` (Wine 8's aborts):
/// frees a block of [`allocate_pages`].
///
/// # Safety
/// `base` came from one of the two allocators above and is freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MmFreeContiguousMemory(base: *mut c_void) {
    let header = base.cast::<u8>().wrapping_sub(8).cast::<usize>();
    // SAFETY: allocate_pages stored the pool block's address 8 bytes
    // before every page it returns.
    let block = unsafe { header.read() };
    // SAFETY: that pool block, with its tag, freed once.
    unsafe { ExFreePoolWithTag(block as PVOID, PAGE_TAG) };
    count_block(false);
}

/// TEST ONLY substitute for `ExAllocatePool2` (absent in Wine 8): non-paged
/// pool from `ExAllocatePoolWithTag`, zeroed unless
/// `POOL_FLAG_UNINITIALIZED`, as ExAllocatePool2 does. Only those two
/// flags are supported: any other request gets NULL.
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExAllocatePool2(flags: POOL_FLAGS, bytes: SIZE_T, tag: ULONG) -> PVOID {
    if flags & !POOL_FLAG_UNINITIALIZED != POOL_FLAG_NON_PAGED {
        return ptr::null_mut();
    }
    // SAFETY: non-paged pool, callable at IRQL <= DISPATCH_LEVEL.
    let block = unsafe { ExAllocatePoolWithTag(NonPagedPool, bytes, tag) };
    if !block.is_null() && flags & POOL_FLAG_UNINITIALIZED == 0 {
        // SAFETY: `bytes` bytes just allocated.
        unsafe { block.cast::<u8>().write_bytes(0, bytes as usize) };
    }
    block
}
