//! TEST ONLY substitutes for the executive's callback objects, which Wine
//! 8 only stubs: its `ExCreateCallback` returns STATUS_SUCCESS and no
//! object, `ExRegisterCallback` a dummy pointer, `ExUnregisterCallback`
//! nothing. Here the one object a driver may open without creating it,
//! `\Callback\PowerState` (on Windows the power manager creates it at boot),
//! is a real callback object in the image: references, up to
//! [`SLOTS`] registrations, `ExNotifyCallback` calling each, and
//! `ExUnregisterCallback` waiting for a call in progress. Under Wine
//! nothing notifies it: Wine has no sleep states.
//!
//! Creating a callback object (`Create` TRUE) is not supported: refused
//! with STATUS_NOT_SUPPORTED, and any other name is not found.
//!
//! Each open, registration, unregistration and dereference is logged with
//! the object's counts afterwards (`nt-driver: TEST BUILD:
//! \Callback\PowerState ExRegisterCallback: 1 registrations, 1
//! references`), so that `cargo xtask wine` can check that every load's
//! registration is undone by its unload.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::fmt::Write;
use core::hint;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID;
use wdk_sys::ntddk::DbgPrintEx;
use wdk_sys::{
    BOOLEAN, DPFLTR_ERROR_LEVEL, LONG_PTR, NTSTATUS, PCALLBACK_FUNCTION, PCALLBACK_OBJECT,
    POBJECT_ATTRIBUTES, PVOID, STATUS_NOT_SUPPORTED, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
};

unsafe extern "C" {
    /// `LONG_PTR ObDereferenceObject(PVOID Object)`: Wine's own
    /// dereference, for every object that is not the substitute's. The
    /// headers make it a macro for ObfDereferenceObject, which this module
    /// replaces, so it is declared here; Wine and libntoskrnl.a export it.
    fn ObDereferenceObject(Object: PVOID) -> LONG_PTR;
}

/// Registrations the object holds at once.
pub const SLOTS: usize = 8;

/// The name of the one object, compared without regard to case.
const POWER_STATE: &str = r"\Callback\PowerState";

/// One registration: the function and its context.
struct Slot {
    function: PCALLBACK_FUNCTION,
    context: PVOID,
}

/// The callback object.
struct CallbackObject {
    /// References handed out by ExCreateCallback and not yet dropped.
    references: AtomicIsize,
    /// Held while the slots are read or changed.
    lock: AtomicBool,
    /// Notifications running now (ExUnregisterCallback waits for none).
    notifying: AtomicUsize,
    slots: UnsafeCell<[Option<Slot>; SLOTS]>,
}

// SAFETY: the slots are only touched with `lock` held.
unsafe impl Sync for CallbackObject {}

static POWER_STATE_OBJECT: CallbackObject = CallbackObject {
    references: AtomicIsize::new(0),
    lock: AtomicBool::new(false),
    notifying: AtomicUsize::new(0),
    slots: UnsafeCell::new([const { None }; SLOTS]),
};

impl CallbackObject {
    fn handle(&'static self) -> PCALLBACK_OBJECT {
        ptr::from_ref(self).cast_mut().cast()
    }

    fn is(object: *const c_void) -> bool {
        ptr::eq(object.cast(), &POWER_STATE_OBJECT)
    }

    /// Runs `f` on the slots with the lock held.
    fn with_slots<R>(&self, f: impl FnOnce(&mut [Option<Slot>; SLOTS]) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            hint::spin_loop();
        }
        // SAFETY: the lock is held: nobody else touches the slots.
        let result = f(unsafe { &mut *self.slots.get() });
        self.lock.store(false, Ordering::Release);
        result
    }
}

/// One NUL-terminated log line.
struct Line {
    bytes: [u8; 160],
    length: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &byte in s.as_bytes() {
            if self.length + 1 < self.bytes.len() {
                self.bytes[self.length] = byte;
                self.length += 1;
            }
        }
        Ok(())
    }
}

/// Logs `event` with the object's counts after it.
fn log_counts(event: &str) {
    let registrations = POWER_STATE_OBJECT.with_slots(|slots| slots.iter().flatten().count());
    let references = POWER_STATE_OBJECT.references.load(Ordering::Acquire);
    let mut line = Line {
        bytes: [0; 160],
        length: 0,
    };
    let _ = writeln!(
        line,
        "nt-driver: TEST BUILD: {POWER_STATE} {event}: {registrations} registrations, \
         {references} references"
    );
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
}

/// Whether the UNICODE_STRING is `\Callback\PowerState`, in any case.
///
/// # Safety
/// `attributes` is null or valid, with a valid name if it has one.
unsafe fn names_power_state(attributes: POBJECT_ATTRIBUTES) -> bool {
    if attributes.is_null() {
        return false;
    }
    // SAFETY: valid, by the caller's contract.
    let name = unsafe { (*attributes).ObjectName };
    if name.is_null() {
        return false;
    }
    // SAFETY: as above.
    let name = unsafe { &*name };
    let units = usize::from(name.Length) / 2;
    if name.Buffer.is_null() || units != POWER_STATE.len() {
        return false;
    }
    // SAFETY: Length bytes of UTF-16 at Buffer, by UNICODE_STRING's rules.
    let text = unsafe { core::slice::from_raw_parts(name.Buffer, units) };
    text.iter()
        .zip(POWER_STATE.bytes())
        .all(|(&unit, byte)| u8::try_from(unit).is_ok_and(|u| u.eq_ignore_ascii_case(&byte)))
}

/// TEST ONLY substitute for `ExCreateCallback` (see the module).
///
/// # Safety
/// As ExCreateCallback: `object` is valid for a write, `attributes` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExCreateCallback(
    object: *mut PCALLBACK_OBJECT,
    attributes: POBJECT_ATTRIBUTES,
    create: BOOLEAN,
    _allow_multiple: BOOLEAN,
) -> NTSTATUS {
    if create != 0 {
        return STATUS_NOT_SUPPORTED;
    }
    // SAFETY: the caller's attributes.
    if object.is_null() || !unsafe { names_power_state(attributes) } {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    POWER_STATE_OBJECT.references.fetch_add(1, Ordering::AcqRel);
    // SAFETY: valid for a write, by the caller's contract.
    unsafe { object.write(POWER_STATE_OBJECT.handle()) };
    log_counts("ExCreateCallback");
    STATUS_SUCCESS
}

/// TEST ONLY substitute for `ExRegisterCallback`: a free slot, or NULL
/// when the object is not the substitute's, has no reference, or is full.
///
/// # Safety
/// As ExRegisterCallback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExRegisterCallback(
    object: PCALLBACK_OBJECT,
    function: PCALLBACK_FUNCTION,
    context: PVOID,
) -> PVOID {
    if !CallbackObject::is(object.cast()) || function.is_none() {
        return ptr::null_mut();
    }
    if POWER_STATE_OBJECT.references.load(Ordering::Acquire) <= 0 {
        return ptr::null_mut();
    }
    let registration = POWER_STATE_OBJECT.with_slots(|slots| {
        let Some((index, slot)) = slots.iter_mut().enumerate().find(|(_, s)| s.is_none()) else {
            return ptr::null_mut();
        };
        *slot = Some(Slot { function, context });
        // The registration handle: the slot's number plus one (never 0).
        (index + 1) as PVOID
    });
    log_counts("ExRegisterCallback");
    registration
}

/// TEST ONLY substitute for `ExUnregisterCallback`: frees the slot, then
/// waits until no notification is running (a call that read the slot
/// before may still be in the function).
///
/// # Safety
/// As ExUnregisterCallback: a handle ExRegisterCallback returned, once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExUnregisterCallback(registration: PVOID) {
    let index = (registration as usize).wrapping_sub(1);
    POWER_STATE_OBJECT.with_slots(|slots| {
        if let Some(slot) = slots.get_mut(index) {
            *slot = None;
        }
    });
    while POWER_STATE_OBJECT.notifying.load(Ordering::Acquire) != 0 {
        hint::spin_loop();
    }
    log_counts("ExUnregisterCallback");
}

/// TEST ONLY substitute for `ExNotifyCallback`: calls every registered
/// function with its context and the two arguments. (Under Wine nothing
/// calls it.)
///
/// # Safety
/// As ExNotifyCallback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExNotifyCallback(object: PCALLBACK_OBJECT, first: PVOID, second: PVOID) {
    if !CallbackObject::is(object.cast()) {
        return;
    }
    POWER_STATE_OBJECT.notifying.fetch_add(1, Ordering::AcqRel);
    for index in 0..SLOTS {
        let registered = POWER_STATE_OBJECT
            .with_slots(|slots| slots[index].as_ref().map(|s| (s.function, s.context)));
        if let Some((Some(function), context)) = registered {
            // SAFETY: a function and context registered together and not
            // yet unregistered when read; ExUnregisterCallback waits for
            // this notification to end.
            unsafe { function(context, first, second) };
        }
    }
    POWER_STATE_OBJECT.notifying.fetch_sub(1, Ordering::AcqRel);
}

/// TEST ONLY substitute for `ObfDereferenceObject`: drops a reference on
/// the substitute's callback object (it is static: nothing is freed);
/// every other object goes to Wine's ObDereferenceObject.
///
/// # Safety
/// As ObfDereferenceObject.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ObfDereferenceObject(object: PVOID) -> LONG_PTR {
    if CallbackObject::is(object) {
        let left = POWER_STATE_OBJECT.references.fetch_sub(1, Ordering::AcqRel) - 1;
        log_counts("ObfDereferenceObject");
        return left as LONG_PTR;
    }
    // SAFETY: a Wine object, by the caller's contract.
    unsafe { ObDereferenceObject(object) }
}
