//! TEST ONLY: stands in for wdk-panic 0.5.0 in the Wine build. Like
//! wdk-panic, a panic bug-checks (`KeBugCheckEx` with the code `RPNC`);
//! first it prints the panic with `DbgPrintEx`, so that a Wine run (where
//! KeBugCheckEx ends the driver host) shows where it happened.
#![no_std]

use core::fmt::{self, Write};
use core::panic::PanicInfo;

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID;
use wdk_sys::DPFLTR_ERROR_LEVEL;
use wdk_sys::ntddk::{DbgPrintEx, KeBugCheckEx};

/// wdk-panic's bug-check code: "RPNC" (Rust panic).
const RUST_PANIC_BUGCHECK_CODE: u32 = u32::from_be_bytes(*b"RPNC");

/// A fixed buffer for one NUL-terminated line.
struct Line {
    bytes: [u8; 256],
    length: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.length + 1 < self.bytes.len() && byte != 0 {
                self.bytes[self.length] = byte;
                self.length += 1;
            }
        }
        Ok(())
    }
}

#[cold]
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let mut line = Line {
        bytes: [0; 256],
        length: 0,
    };
    let _ = writeln!(line, "nt-driver: panic: {info}");
    // SAFETY: a constant "%s" format and a NUL-terminated argument (the
    // buffer keeps its last byte 0).
    let _ = unsafe {
        DbgPrintEx(
            DPFLTR_IHVDRIVER_ID as u32,
            DPFLTR_ERROR_LEVEL,
            c"%s".as_ptr(),
            line.bytes.as_ptr(),
        )
    };
    let (file, length, row, column) = info.location().map_or((0, 0, 0, 0), |l| {
        (
            l.file().as_ptr() as u64,
            l.file().len() as u64,
            u64::from(l.line()),
            u64::from(l.column()),
        )
    });
    // SAFETY: no precondition; callable at any IRQL.
    unsafe { KeBugCheckEx(RUST_PANIC_BUGCHECK_CODE, file, length, row, column) }
}
