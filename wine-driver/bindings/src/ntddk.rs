//! Every function of ntifs.h, ntddk.h and ntstrsafe.h (wdk-sys's
//! `ntddk` module); the types are at the crate root.

pub use bindings::*;

#[allow(missing_docs)]
#[allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#[allow(clippy::all, clippy::pedantic)]
mod bindings {
    #[allow(clippy::wildcard_imports)]
    use crate::types::*;

    include!(concat!(env!("OUT_DIR"), "/ntddk.rs"));

    unsafe extern "C" {
        /// mingw-w64: its wdm.h (10.0) has no `ExAllocatePool2` (Windows 10
        /// 2004), which wdk-sys binds from the WDK and wdk-alloc calls. The
        /// WDK's prototype: `PVOID ExAllocatePool2(POOL_FLAGS Flags,
        /// SIZE_T NumberOfBytes, ULONG Tag)`. Wine 8 lacks the function
        /// too: the test image defines it (image/src/substitutes.rs).
        pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;

        /// mingw-w64: its wdm.h (10.0) has no `MmAllocateContiguousNodeMemory`
        /// (Windows Vista and later; the WDK's wdm.h has it). The WDK's
        /// prototype: `PVOID MmAllocateContiguousNodeMemory(SIZE_T
        /// NumberOfBytes, PHYSICAL_ADDRESS LowestAcceptableAddress,
        /// PHYSICAL_ADDRESS HighestAcceptableAddress, PHYSICAL_ADDRESS
        /// BoundaryAddressMultiple, ULONG Protect, NODE_REQUIREMENT
        /// PreferredNode)`. Wine 8 lacks the function: the test image
        /// defines it.
        pub fn MmAllocateContiguousNodeMemory(
            NumberOfBytes: SIZE_T,
            LowestAcceptableAddress: PHYSICAL_ADDRESS,
            HighestAcceptableAddress: PHYSICAL_ADDRESS,
            BoundaryAddressMultiple: PHYSICAL_ADDRESS,
            Protect: ULONG,
            PreferredNode: NODE_REQUIREMENT,
        ) -> PVOID;
    }
}
