//! TEST ONLY substitutes for the executive's callback objects, which Wine
//! 8 only stubs: its `ExCreateCallback` returns STATUS_SUCCESS and no
//! object, `ExRegisterCallback` a dummy pointer, `ExUnregisterCallback`
//! nothing. Here the one object a driver may open without creating it,
//! `\Callback\PowerState` (on Windows the power manager creates it at boot),
//! is a real callback object in the image: references, up to
//! [`SLOTS`] registrations, `ExNotifyCallback` calling each, and
//! `ExUnregisterCallback` waiting for a call in progress. Wine has no
//! sleep states: only the test hook below notifies it.
//!
//! Creating a callback object (`Create` TRUE) is not supported: refused
//! with STATUS_NOT_SUPPORTED, and any other name is not found.
//!
//! Each open, registration, unregistration and dereference is logged with
//! the object's counts afterwards (`nt-driver: TEST BUILD:
//! \Callback\PowerState ExRegisterCallback: 1 registrations, 1
//! references`), so that `cargo xtask wine` can check that every load's
//! registration is undone by its unload.
//!
//! Wine has no power manager, so nothing would ever notify the object. A
//! TEST ONLY hook stands in for it: [`IofCompleteRequest`] (Wine's
//! IoCompleteRequest otherwise) notifies `PO_CB_SYSTEM_STATE_LOCK` with
//! Argument2 = the request's one input byte (0: about to leave S0, 1: back
//! in S0) when it completes a DEVICE_CONTROL request with the code
//! [`POWER_TEST_CODE`], which nt-driver itself refuses as unknown. The
//! notification runs before the completion, so the request returns only
//! once the driver has handled the transition.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::fmt::Write;
use core::hint;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID;
use wdk_sys::ntddk::DbgPrintEx;
use wdk_sys::{
    BOOLEAN, CCHAR, DPFLTR_ERROR_LEVEL, LONG_PTR, NTSTATUS, PCALLBACK_FUNCTION, PCALLBACK_OBJECT,
    PIRP, POBJECT_ATTRIBUTES, PVOID, STATUS_NOT_SUPPORTED, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_SUCCESS,
};

unsafe extern "C" {
    /// `VOID IoCompleteRequest(PIRP Irp, CCHAR PriorityBoost)`: Wine's
    /// completion, for [`IofCompleteRequest`]. The headers make it a macro
    /// for IofCompleteRequest, which this module replaces, so it is
    /// declared here; Wine and libntoskrnl.a export it.
    fn IoCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);

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

/// Logs `nt-driver: TEST BUILD: ` and `args` as one line (for the other
/// substitutes' counts too).
pub(crate) fn log_test_line(args: core::fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; 160],
        length: 0,
    };
    let _ = writeln!(line, "nt-driver: TEST BUILD: {args}");
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
/// function with its context and the two arguments. (Under Wine only the
/// test hook in [`IofCompleteRequest`] calls it.)
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

/// The test request that delivers a power notification:
/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0xF57, METHOD_BUFFERED, FILE_ANY_ACCESS)`,
/// a function code nt-driver does not have (wine-driver/client sends it).
pub const POWER_TEST_CODE: u32 = (0x22 << 16) | (0xF57 << 2);

/// `PO_CB_SYSTEM_STATE_LOCK` (wdm.h).
const PO_CB_SYSTEM_STATE_LOCK: usize = 3;

/// `IRP_MJ_DEVICE_CONTROL`.
const IRP_MJ_DEVICE_CONTROL: u8 = 0x0e;

/// Argument2 of the notification `irp` asks for, if it is the test request.
///
/// # Safety
/// `irp` is a valid IRP being completed by its driver.
unsafe fn power_test_argument(irp: PIRP) -> Option<u8> {
    // SAFETY: a valid IRP, by the caller's contract.
    let irp = unsafe { &*irp };
    // SAFETY: while a driver owns the IRP, Tail.Overlay is the member of
    // the Tail union in use.
    let overlay = unsafe { &irp.Tail.Overlay };
    // SAFETY: as above; CurrentStackLocation (not PacketType) is the member
    // in use while the driver completes the IRP.
    let stack = unsafe {
        overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    };
    if stack.is_null() {
        return None;
    }
    // SAFETY: the current stack location of a valid IRP.
    let stack = unsafe { &*stack };
    if stack.MajorFunction != IRP_MJ_DEVICE_CONTROL {
        return None;
    }
    // SAFETY: for IRP_MJ_DEVICE_CONTROL, Parameters.DeviceIoControl is the
    // member in use.
    let parameters = unsafe { stack.Parameters.DeviceIoControl };
    if parameters.IoControlCode != POWER_TEST_CODE || parameters.InputBufferLength != 1 {
        return None;
    }
    // SAFETY: a METHOD_BUFFERED request: SystemBuffer holds the input.
    let buffer = unsafe { irp.AssociatedIrp.SystemBuffer }.cast::<u8>();
    if buffer.is_null() {
        return None;
    }
    // SAFETY: one input byte, as InputBufferLength says.
    Some(unsafe { buffer.read() })
}

/// TEST ONLY substitute for `IofCompleteRequest`: Wine's
/// IoCompleteRequest, after delivering the power notification of a test
/// request (see the module).
///
/// # Safety
/// As IofCompleteRequest: a valid IRP its driver owns, completed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn IofCompleteRequest(irp: PIRP, boost: CCHAR) {
    // SAFETY: the caller's IRP.
    if let Some(argument) = unsafe { power_test_argument(irp) } {
        log_counts(if argument == 0 {
            "power test hook: PO_CB_SYSTEM_STATE_LOCK, 0 (about to leave S0)"
        } else {
            "power test hook: PO_CB_SYSTEM_STATE_LOCK, 1 (back in S0)"
        });
        // SAFETY: the substitute's object; the arguments are values.
        unsafe {
            ExNotifyCallback(
                POWER_STATE_OBJECT.handle(),
                PO_CB_SYSTEM_STATE_LOCK as PVOID,
                usize::from(argument) as PVOID,
            );
        }
    }
    // SAFETY: the caller's IRP, completed once.
    unsafe { IoCompleteRequest(irp, boost) };
}
