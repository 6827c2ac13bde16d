//! COM1 (16550 UART at 0x3F8) output: the test's only channel to the runner.
//!
//! Both emulators write what the kernel sends to a file (Bochs `com1:
//! mode=file`, QEMU `-serial file:`), one line per step.

use core::fmt::{self, Write};
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::port::Port;

const COM1: u16 = 0x3F8;

/// The UART register at `offset` from COM1's base.
const fn com1_register(offset: u16) -> Port {
    // SAFETY: the 16550 registers move bytes between the CPU and the serial
    // line; the UART does no DMA.
    unsafe { Port::new(COM1 + offset) }
}

/// Transmit holding register; the divisor's low byte while LCR.DLAB is set.
const DATA: Port = com1_register(0);
/// Interrupt enable; the divisor's high byte while LCR.DLAB is set.
const IER: Port = com1_register(1);
/// FIFO control.
const FCR: Port = com1_register(2);
/// Line control.
const LCR: Port = com1_register(3);
/// Modem control.
const MCR: Port = com1_register(4);
/// Line status.
const LSR: Port = com1_register(5);

/// LSR bit 5: the transmit holding register can take a byte.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// LSR bit 6: holding and shift registers are both empty (all sent).
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;

/// Serialises whole lines from several processors.
static LOCK: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    IER.write(0x00);
    LCR.write(0x80); // DLAB: the next two registers are the divisor
    DATA.write(0x01); // divisor 1 = 115200 baud
    IER.write(0x00);
    LCR.write(0x03); // 8 data bits, no parity, 1 stop bit
    FCR.write(0xC7); // enable and clear FIFOs
    MCR.write(0x03); // DTR, RTS; OUT2 clear keeps the IRQ line quiet
}

fn write_byte(byte: u8) {
    while LSR.read() & LSR_THR_EMPTY == 0 {
        spin_loop();
    }
    DATA.write(byte);
}

/// Waits until every byte written has left the UART, so that nothing is
/// lost when the emulator exits.
pub fn drain() {
    while LSR.read() & LSR_TRANSMITTER_EMPTY == 0 {
        spin_loop();
    }
}

/// A writer to COM1 that takes no lock.
struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(write_byte);
        Ok(())
    }
}

/// Prints one line under the line lock: the body of [`println!`].
pub fn print_line(args: fmt::Arguments<'_>) {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spin_loop();
    }
    // Writing to COM1 cannot fail.
    let _ = writeln!(Com1, "{args}");
    LOCK.store(false, Ordering::Release);
}

/// Prints one line without the lock, for the last words of a failing run: the
/// failing processor may itself hold the lock (a fault inside `println!`).
pub fn print_line_unlocked(args: fmt::Arguments<'_>) {
    let _ = writeln!(Com1, "{args}");
}

/// Prints a line to COM1, like `std::println!`.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::serial::print_line(format_args!($($arg)*))
    };
}
