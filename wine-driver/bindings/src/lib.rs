//! TEST ONLY: wdk-sys 0.5.2's names and module layout, generated at build
//! time by bindgen from mingw-w64's DDK headers (see build.rs), so that
//! nt-driver's glue compiles, unchanged, for x86_64-pc-windows-msvc on a
//! machine without the WDK. Types and constants are at the crate root,
//! functions in [`ntddk`], as in wdk-sys.
//!
//! Same rules, other headers: that the glue compiles against this crate is
//! evidence that it is right for wdk-sys, not proof.
#![no_std]

pub use crate::constants::*;
pub use crate::types::*;

pub mod ntddk;

mod types {
    #![allow(missing_docs)]
    #![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
    #![allow(unnecessary_transmutes, unsafe_op_in_unsafe_fn)]
    #![allow(clippy::all, clippy::pedantic, clippy::undocumented_unsafe_blocks)]
    #![allow(clippy::multiple_unsafe_ops_per_block)]

    include!(concat!(env!("OUT_DIR"), "/types.rs"));

    /// mingw-w64: its wdm.h predates `POOL_FLAGS` (Windows 10 2004); wdk-sys
    /// has it from the WDK's headers.
    pub type POOL_FLAGS = ULONG64;
}

mod constants {
    #![allow(missing_docs)]
    #![allow(non_upper_case_globals)]
    #![allow(clippy::all, clippy::pedantic)]

    use crate::types::*;

    include!(concat!(env!("OUT_DIR"), "/constants.rs"));

    // mingw-w64: no POOL_FLAG_* in its headers. wdk-sys 0.5.2 writes these
    // by hand too (its constants.rs: bindgen skips the WDK's `ui64`
    // suffixes); the values are the WDK's wdm.h's.
    /// Non-paged pool, not executable.
    pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
    /// Paged pool.
    pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;
    /// Do not zero the allocation.
    pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
}

// wdk-sys 0.5.2 defines these two link symbols itself (not generated), and
// so does this crate, for the same reasons.

/// The MSVC linker symbol that says the image uses floating point. LLVM
/// references it whenever the IR has a floating-point type, even where no
/// floating-point instruction is emitted; the kernel has no CRT to define
/// it.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static _fltused: () = ();

/// The C++ exception personality routine that the precompiled `core`
/// (built with panic = unwind) names in its unwind tables. With
/// panic = abort nothing unwinds, so nothing calls it; the kernel has no
/// C++ runtime to provide it. Should an exception reach a Rust frame, the
/// answer is `ExceptionContinueSearch`: not handled here.
#[cfg(panic = "abort")]
#[unsafe(no_mangle)]
pub extern "system" fn __CxxFrameHandler3() -> i32 {
    // EXCEPTION_DISPOSITION::ExceptionContinueSearch: "not mine".
    1
}

// mingw-w64: its libntoskrnl.a has no import entry for `__chkstk`, the
// stack probe LLVM calls in a function whose frame is larger than a page.
// ntoskrnl.exe exports it (Windows' and Wine's), and the WDK's ntoskrnl.lib,
// which wdk-sys links, lists it; here the import is made directly.
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// The stack probe: touches each page of a frame of RAX bytes below the
    /// caller's stack pointer, changing no register but R10, R11 and the
    /// flags. Only compiler-generated code calls it.
    fn __chkstk();
}
