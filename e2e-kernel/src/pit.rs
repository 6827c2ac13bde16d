//! Delays measured by the 8254 programmable interval timer, channel 2.
//!
//! Channel 2's gate and output are wired to port 0x61 (bits 0 and 5): program
//! it in mode 0 ("interrupt on terminal count") and poll the output, which
//! rises when the count reaches zero. Both emulators count in emulated time,
//! which is what the startup protocol's delays are about.

use core::hint::spin_loop;

use crate::port::Port;

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;

// SAFETY: the PIT and port 0x61 (timer gate, speaker) do no DMA.
const CHANNEL2_DATA: Port = unsafe { Port::new(0x42) };
// SAFETY: as above.
const MODE_COMMAND: Port = unsafe { Port::new(0x43) };
// SAFETY: as above.
const CONTROL_B: Port = unsafe { Port::new(0x61) };

/// Port 0x61 bit 0: channel 2 gate.
const GATE2: u8 = 1 << 0;
/// Port 0x61 bit 1: speaker data enable.
const SPEAKER: u8 = 1 << 1;
/// Port 0x61 bit 5: channel 2 output.
const OUT2: u8 = 1 << 5;
/// Channel 2, low then high byte, mode 0, binary.
const CHANNEL2_MODE0: u8 = 0b1011_0000;

/// Busy-waits for at least `micros` microseconds.
pub fn sleep_us(micros: u64) {
    let mut ticks = (micros * PIT_HZ).div_ceil(1_000_000);
    while ticks > 0 {
        let chunk = u16::try_from(ticks).unwrap_or(u16::MAX);
        count_down(chunk);
        ticks -= u64::from(chunk);
    }
}

/// Counts `ticks` PIT ticks down on channel 2 and waits for the end.
fn count_down(ticks: u16) {
    CONTROL_B.write((CONTROL_B.read() & !SPEAKER) | GATE2);
    MODE_COMMAND.write(CHANNEL2_MODE0);
    let [low, high] = ticks.to_le_bytes();
    CHANNEL2_DATA.write(low);
    CHANNEL2_DATA.write(high);
    while CONTROL_B.read() & OUT2 == 0 {
        spin_loop();
    }
}
