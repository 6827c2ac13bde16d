//! The calling thread pinned to one logical processor, processor groups
//! included (more than 64 processors): `SetThreadGroupAffinity` with a
//! one-processor mask, checked with `GetCurrentProcessorNumberEx`, and
//! the previous affinity restored when the [`Pinned`] guard drops.

use std::io;
use std::marker::PhantomData;

use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Kernel::PROCESSOR_NUMBER;
use windows_sys::Win32::System::SystemInformation::GROUP_AFFINITY;
use windows_sys::Win32::System::Threading::{
    GetActiveProcessorCount, GetActiveProcessorGroupCount, GetCurrentProcessorNumberEx,
    GetCurrentThread, SetThreadGroupAffinity, SwitchToThread,
};

/// How many times the thread yields, after its affinity changed, for the
/// scheduler to move it to the processor.
const MOVE_TRIES: usize = 64;

/// The number of active processors in each processor group, by group.
#[must_use]
pub fn group_sizes() -> Vec<u32> {
    // SAFETY: no precondition.
    let groups = unsafe { GetActiveProcessorGroupCount() };
    // SAFETY: no precondition; a group number below the count.
    (0..groups)
        .map(|group| unsafe { GetActiveProcessorCount(group) })
        .collect()
}

/// The calling thread, bound to one processor until this value drops.
pub struct Pinned {
    previous: GROUP_AFFINITY,
    /// Neither `Send` nor `Sync`: the affinity restored on drop is the
    /// calling thread's, so the guard must drop on the thread that made it.
    _thread: PhantomData<*const ()>,
}

/// Binds the calling thread to processor `number` of processor group
/// `group`, and returns once the thread runs there.
///
/// # Errors
/// `SetThreadGroupAffinity`'s error (e.g. `ERROR_INVALID_PARAMETER` for a
/// processor that is not active), or `ERROR_TIMEOUT` when the thread is
/// still elsewhere after yielding: the affinity is restored then.
pub fn pin(group: u16, number: u8) -> io::Result<Pinned> {
    let mask = 1usize
        .checked_shl(u32::from(number))
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let affinity = GROUP_AFFINITY {
        Mask: mask,
        Group: group,
        Reserved: [0; 3],
    };
    let mut previous = GROUP_AFFINITY::default();
    // SAFETY: no precondition; a pseudo-handle, nothing to close.
    let thread = unsafe { GetCurrentThread() };
    // SAFETY: the calling thread; both structures are valid for the call.
    if unsafe { SetThreadGroupAffinity(thread, &affinity, &mut previous) } == 0 {
        // SAFETY: no precondition.
        let win32 = unsafe { GetLastError() };
        return Err(io::Error::from_raw_os_error(win32 as i32));
    }
    let pinned = Pinned {
        previous,
        _thread: PhantomData,
    };
    for _ in 0..MOVE_TRIES {
        let mut current = PROCESSOR_NUMBER::default();
        // SAFETY: `current` is a valid out parameter.
        unsafe { GetCurrentProcessorNumberEx(&mut current) };
        if (current.Group, current.Number) == (group, number) {
            return Ok(pinned);
        }
        // SAFETY: no precondition; lets the scheduler move the thread.
        unsafe { SwitchToThread() };
    }
    // `pinned` drops here: the previous affinity comes back.
    Err(io::Error::from(io::ErrorKind::TimedOut))
}

impl core::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pinned")
            .field("previous_group", &self.previous.Group)
            .field("previous_mask", &self.previous.Mask)
            .finish()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: no precondition; a pseudo-handle, nothing to close.
        let thread = unsafe { GetCurrentThread() };
        // SAFETY: the calling thread, the one `pin` bound (the guard is not
        // Send); the affinity it had before, valid for the call.
        unsafe { SetThreadGroupAffinity(thread, &self.previous, core::ptr::null_mut()) };
    }
}
