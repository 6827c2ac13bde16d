//! [`Log`] over `DbgPrintEx`: component IHVDRIVER at error level, which
//! the default filter lets through, so DbgView shows it without the
//! "Debug Print Filter" registry key.

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID;
use wdk_sys::DPFLTR_ERROR_LEVEL;
use wdk_sys::ntddk::DbgPrintEx;

use crate::log::{Log, Message};

/// Prints each line with `DbgPrintEx(IHVDRIVER, ERROR, "%s", line)`.
#[derive(Debug)]
pub struct DebugPrint;

impl Log for DebugPrint {
    fn log(&mut self, args: core::fmt::Arguments<'_>) {
        let message = Message::new(args);
        let text = message.as_c_bytes();
        // SAFETY: a constant "%s" format (the text is never a format) and a
        // NUL-terminated argument of at most 512 bytes; IRQL <= DIRQL.
        let _ = unsafe {
            DbgPrintEx(
                DPFLTR_IHVDRIVER_ID as u32,
                DPFLTR_ERROR_LEVEL,
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        };
    }
}
