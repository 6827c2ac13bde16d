//! x86 I/O ports.

use core::arch::asm;

/// One 8-bit I/O port.
#[derive(Debug, Clone, Copy)]
pub struct Port(u16);

impl Port {
    /// A handle for `port`.
    ///
    /// # Safety
    /// Reading and writing the port must have no effect on memory safety
    /// (the device behind it does no DMA into memory the kernel uses): the
    /// methods are safe to call on the strength of this promise.
    pub const unsafe fn new(port: u16) -> Self {
        Self(port)
    }

    /// IN from the port.
    pub fn read(self) -> u8 {
        let value: u8;
        // SAFETY: `Port::new`'s caller promised that the port's device cannot
        // affect memory safety; IN touches no memory and no stack.
        unsafe {
            asm!("in al, dx", in("dx") self.0, out("al") value, options(nomem, nostack, preserves_flags));
        }
        value
    }

    /// OUT to the port.
    pub fn write(self, value: u8) {
        // SAFETY: as in `read`; OUT touches no memory and no stack.
        unsafe {
            asm!("out dx, al", in("dx") self.0, in("al") value, options(nomem, nostack, preserves_flags));
        }
    }
}
