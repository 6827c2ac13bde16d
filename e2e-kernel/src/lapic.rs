//! The local APIC in xAPIC mode (memory-mapped registers): its ID and the
//! interrupt command register that starts the other processors.

use core::hint::spin_loop;
use core::ptr::NonNull;

/// Local APIC ID register (ID in bits 31:24).
const ID: usize = 0x20;
/// Spurious interrupt vector register.
const SVR: usize = 0xF0;
/// Interrupt command register, low half (writing it sends the IPI).
const ICR_LOW: usize = 0x300;
/// Interrupt command register, high half (destination in bits 31:24).
const ICR_HIGH: usize = 0x310;

/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// ICR bit 12: delivery status, send pending.
const ICR_SEND_PENDING: u32 = 1 << 12;
/// ICR: delivery mode INIT (101b), level assert.
const ICR_INIT: u32 = 0b101 << 8 | 1 << 14;
/// ICR: delivery mode start-up (110b), level assert; the vector in bits 7:0.
const ICR_STARTUP: u32 = 0b110 << 8 | 1 << 14;

/// The local APIC's registers, as every processor sees its own at the same
/// address.
#[derive(Debug, Clone, Copy)]
pub struct LocalApic {
    base: NonNull<u32>,
}

// SAFETY: the register page is per processor in hardware; the handle is only
// an address, and every access is a single volatile 32-bit load or store.
unsafe impl Send for LocalApic {}
// SAFETY: as above.
unsafe impl Sync for LocalApic {}

impl LocalApic {
    /// The local APIC whose registers are at physical address `base`.
    ///
    /// # Safety
    /// `base` must be the xAPIC register page (from the MADT), identity mapped,
    /// with the APIC in xAPIC mode.
    pub unsafe fn new(base: NonNull<u32>) -> Self {
        Self { base }
    }

    fn register(self, offset: usize) -> *mut u32 {
        self.base.as_ptr().wrapping_byte_add(offset)
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: an aligned xAPIC register in the mapped page.
        unsafe { self.register(offset).read_volatile() }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.register(offset).write_volatile(value) }
    }

    /// The calling processor's local APIC ID.
    pub fn id(self) -> u8 {
        (self.read(ID) >> 24) as u8
    }

    /// Software-enables the calling processor's local APIC. Interrupts stay
    /// disabled (RFLAGS.IF = 0); this only lets the APIC send IPIs.
    pub fn enable(self) {
        self.write(SVR, self.read(SVR) | SVR_ENABLE);
    }

    /// Sends an INIT IPI to `apic_id`.
    pub fn send_init(self, apic_id: u8) {
        self.send(apic_id, ICR_INIT);
    }

    /// Sends a start-up IPI to `apic_id`: it starts in real mode at
    /// `vector * 4 KiB`.
    pub fn send_startup(self, apic_id: u8, vector: u8) {
        self.send(apic_id, ICR_STARTUP | u32::from(vector));
    }

    fn send(self, apic_id: u8, command: u32) {
        self.write(ICR_HIGH, u32::from(apic_id) << 24);
        self.write(ICR_LOW, command);
        while self.read(ICR_LOW) & ICR_SEND_PENDING != 0 {
            spin_loop();
        }
    }
}
