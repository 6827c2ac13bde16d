//! Ending the run: the final `E2E RESULT:` line and a signal the emulator turns
//! into its exit status.
//!
//! The kernel sends both emulators' signals instead of detecting which one it
//! runs on: each signal is inert on the other emulator, so there is no
//! detection (CPUID hypervisor leaves, which a Bochs build could also report)
//! to get wrong.
//! - QEMU: `-device isa-debug-exit,iobase=0xf4,iosize=0x04` exits with status
//!   `value * 2 + 1` when the kernel writes `value` to port 0xF4. Bochs has no
//!   device there and ignores the write.
//! - Bochs, PASS: the magic breakpoint `xchg bx, bx` (`magic_break:
//!   enabled=1`) stops in the debugger, whose command file says `quit`: exit
//!   status 0. On QEMU the instruction is a no-op, but QEMU has exited by then.
//! - Bochs, FAIL: the string "Shutdown" written to port 0x8900 makes Bochs
//!   stop with a fatal error, a nonzero exit status. QEMU ignores the port.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::port::Port;
use crate::serial;

/// The isa-debug-exit port.
// SAFETY: QEMU's isa-debug-exit device only ends the emulation; nothing on Bochs.
const QEMU_EXIT: Port = unsafe { Port::new(0xF4) };
/// Bochs' shutdown port.
// SAFETY: Bochs' shutdown port only ends the emulation; nothing on QEMU.
const BOCHS_SHUTDOWN: Port = unsafe { Port::new(0x8900) };

/// Written to [`QEMU_EXIT`] on PASS: QEMU exits with status 0x10 * 2 + 1 = 33.
pub const QEMU_PASS: u8 = 0x10;
/// Written to [`QEMU_EXIT`] on FAIL: QEMU exits with status 0x11 * 2 + 1 = 35.
pub const QEMU_FAIL: u8 = 0x11;

/// Set by the first processor to finish: there is exactly one result line.
static FINISHED: AtomicBool = AtomicBool::new(false);

/// Ends the run with `E2E RESULT: PASS <summary>`. Called when every other
/// processor is idle.
pub fn pass(summary: fmt::Arguments<'_>) -> ! {
    finish(true, summary)
}

/// Ends the run with `E2E RESULT: FAIL <reason>`. Takes no serial line lock:
/// usable from code that interrupted a holder of it (an exception handler,
/// the panic handler).
pub fn fail(reason: fmt::Arguments<'_>) -> ! {
    finish(false, reason)
}

fn finish(passed: bool, text: fmt::Arguments<'_>) -> ! {
    if FINISHED.swap(true, Ordering::AcqRel) {
        // Another processor (or a fault while finishing) got here first.
        halt_forever();
    }
    let verdict = if passed { "PASS" } else { "FAIL" };
    serial::print_line_unlocked(format_args!("E2E RESULT: {verdict} {text}"));
    serial::drain();
    if passed {
        QEMU_EXIT.write(QEMU_PASS);
        bochs_magic_breakpoint();
    } else {
        QEMU_EXIT.write(QEMU_FAIL);
        b"Shutdown"
            .iter()
            .for_each(|&byte| BOCHS_SHUTDOWN.write(byte));
    }
    halt_forever()
}

/// Bochs' magic breakpoint.
fn bochs_magic_breakpoint() {
    // SAFETY: `xchg bx, bx` exchanges a register with itself: no effect on
    // the program's state (Bochs stops in its debugger).
    unsafe {
        asm!("xchg bx, bx", options(nomem, nostack, preserves_flags));
    }
}

/// Stops this processor for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: interrupts are disabled; HLT waits for an NMI or SMI, after
        // which the loop halts again.
        unsafe {
            asm!("cli", "hlt", options(nomem, nostack));
        }
    }
}
