//! The `\Callback\PowerState` registration: the callback forwards each
//! system power transition to [`crate::Device::power`], which decides what
//! to do (see [`crate::power`]).

use core::ffi::c_void;
use core::ptr;

use wdk_sys::_MODE::KernelMode;
use wdk_sys::ntddk::{
    ExCreateCallback, ExRegisterCallback, ExUnregisterCallback, KeDelayExecutionThread,
    ObfDereferenceObject,
};
use wdk_sys::{LARGE_INTEGER, NTSTATUS, OBJ_CASE_INSENSITIVE, OBJECT_ATTRIBUTES, PCALLBACK_OBJECT};

use crate::log::Log;
use crate::names::POWER_STATE_CALLBACK_UTF16;
use crate::ntstatus::{STATUS_UNSUCCESSFUL, nt_success};
use crate::power::PowerEvent;

use super::debug_print::DebugPrint;
use super::{DriverDevice, unicode};

/// The callback object and this driver's registration on it, undone by
/// [`PowerCallback::unregister`].
#[derive(Debug)]
pub struct PowerCallback {
    object: PCALLBACK_OBJECT,
    registration: *mut c_void,
}

impl PowerCallback {
    /// Opens `\Callback\PowerState` (`ExCreateCallback` with Create FALSE:
    /// the power manager created it) and registers [`power_state_changed`]
    /// with `device` as its context.
    ///
    /// # Errors
    /// The failing status; nothing stays registered or referenced.
    ///
    /// # Safety
    /// PASSIVE_LEVEL; `device` is initialized and stays valid until
    /// [`PowerCallback::unregister`] has returned.
    pub unsafe fn register(
        device: *const DriverDevice,
        log: &mut dyn Log,
    ) -> Result<Self, NTSTATUS> {
        let mut name = unicode(&POWER_STATE_CALLBACK_UTF16);
        // InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE,
        // NULL, NULL).
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: ptr::null_mut(),
            ObjectName: &mut name,
            Attributes: OBJ_CASE_INSENSITIVE,
            SecurityDescriptor: ptr::null_mut(),
            SecurityQualityOfService: ptr::null_mut(),
        };
        let mut object: PCALLBACK_OBJECT = ptr::null_mut();
        // SAFETY: PASSIVE_LEVEL; `object` receives a referenced callback
        // object; the attributes and the name outlive the call.
        let status = unsafe { ExCreateCallback(&mut object, &mut attributes, 0, 1) };
        if !nt_success(status) {
            log.log(format_args!(
                "DriverEntry: ExCreateCallback(\\Callback\\PowerState) failed with status \
                 {status:#x}"
            ));
            return Err(status);
        }
        if object.is_null() {
            log.log(format_args!(
                "DriverEntry: ExCreateCallback(\\Callback\\PowerState) succeeded without an object"
            ));
            return Err(STATUS_UNSUCCESSFUL);
        }
        // SAFETY: a referenced callback object; the routine is in the
        // driver image (non-paged) and the context outlives the
        // registration (the caller's contract).
        let registration = unsafe {
            ExRegisterCallback(object, Some(power_state_changed), device.cast_mut().cast())
        };
        if registration.is_null() {
            log.log(format_args!(
                "DriverEntry: ExRegisterCallback(\\Callback\\PowerState) failed"
            ));
            // SAFETY: the reference ExCreateCallback gave, dropped once.
            let _ = unsafe { ObfDereferenceObject(object.cast()) };
            return Err(STATUS_UNSUCCESSFUL);
        }
        Ok(Self {
            object,
            registration,
        })
    }

    /// Unregisters the callback (`ExUnregisterCallback` returns only when
    /// no call of it is running) and drops the reference on the object.
    ///
    /// # Safety
    /// PASSIVE_LEVEL, not from within the callback.
    pub unsafe fn unregister(self) {
        // SAFETY: the registration ExRegisterCallback returned, undone once.
        unsafe { ExUnregisterCallback(self.registration) };
        // SAFETY: the reference ExCreateCallback gave, dropped once, after
        // the registration on the object is gone.
        let _ = unsafe { ObfDereferenceObject(self.object.cast()) };
    }
}

/// Waits a millisecond: `KeDelayExecutionThread(KernelMode, FALSE, -1 ms)`
/// (a negative interval is relative, in 100 ns units).
fn wait_a_millisecond() {
    let mut interval = LARGE_INTEGER { QuadPart: -10_000 };
    // SAFETY: PASSIVE_LEVEL (the power callback); a valid interval. The
    // status of a non-alertable kernel-mode wait is STATUS_SUCCESS.
    let _ = unsafe { KeDelayExecutionThread(KernelMode as i8, 0, &mut interval) };
}

/// `\Callback\PowerState`'s callback: Argument1 names the notification,
/// Argument2 its value; [`PowerEvent::from_callback`] picks the system
/// power transitions and [`crate::Device::power`] acts on them.
///
/// # Safety
/// Called by the executive at PASSIVE_LEVEL with the context registered
/// in [`PowerCallback::register`].
unsafe extern "C" fn power_state_changed(
    context: *mut c_void,
    argument1: *mut c_void,
    argument2: *mut c_void,
) {
    let Some(event) = PowerEvent::from_callback(argument1.addr(), argument2.addr()) else {
        return;
    };
    // SAFETY: the device state registered as the context, initialized
    // before the registration and dropped only after ExUnregisterCallback
    // returned; shared access, serialized by its Busy lock.
    let device = unsafe { &*context.cast::<DriverDevice>() };
    device.power(event, &mut DebugPrint, &mut wait_a_millisecond);
}
