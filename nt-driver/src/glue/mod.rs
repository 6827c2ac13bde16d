//! The Windows kernel glue: DriverEntry, DriverUnload, the dispatch
//! routine, and the platform services over wdk-sys. Compiled only for the
//! driver build on Windows (see docs/src/windows/not-compiled-here.md): every
//! decision is made by the modules above, which the tests cover.

mod debug_print;
mod irp;
mod irql;
mod memory;
mod power;
mod processors;
mod wdmsec;

use core::ptr;

use wdk_sys::ntddk::{IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink};
use wdk_sys::{
    DEVICE_OBJECT, DO_BUFFERED_IO, DO_DEVICE_INITIALIZING, DRIVER_OBJECT, FILE_DEVICE_SECURE_OPEN,
    FILE_DEVICE_UNKNOWN, GUID, IRP, NTSTATUS, PCUNICODE_STRING, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS, UNICODE_STRING,
};

use crate::log::Log;
use crate::names::{
    DEVICE_CLASS_GUID, DEVICE_NAME_UTF16, DEVICE_SDDL_UTF16, DOS_DEVICE_NAME_UTF16, unicode_lengths,
};
use crate::ntstatus::nt_success;
use crate::{Control, Device};

use debug_print::DebugPrint;
use memory::ContiguousAllocator;
use power::PowerCallback;
use processors::GroupProcessors;

/// The driver's state.
type DriverDevice = Device<GroupProcessors, ContiguousAllocator>;

/// The device extension: the state, and the power-callback registration
/// whose context is that state.
struct Extension {
    device: DriverDevice,
    power: Option<PowerCallback>,
}

/// A `UNICODE_STRING` over a static NUL-terminated array. The kernel only
/// reads these names; the pointer is `*mut` because the C prototypes take
/// `PUNICODE_STRING`.
fn unicode(wide: &'static [u16]) -> UNICODE_STRING {
    let (length, maximum) = unicode_lengths(wide);
    UNICODE_STRING {
        Length: length,
        MaximumLength: maximum,
        Buffer: wide.as_ptr().cast_mut(),
    }
}

/// The driver's entry point: the device, secured; its state; the
/// `\Callback\PowerState` registration; its link; the dispatch table. A
/// failure at any step undoes the steps before it.
///
/// # Safety
/// Called by the I/O manager with a valid driver object, at PASSIVE_LEVEL.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut log = DebugPrint;
    let Ok(control) = Control::new(GroupProcessors::new(), ContiguousAllocator) else {
        log.log(format_args!(
            "DriverEntry: no memory for the processor state"
        ));
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    let processors = control.processor_count();

    let mut device_name = unicode(&DEVICE_NAME_UTF16);
    let sddl = unicode(&DEVICE_SDDL_UTF16);
    let (data1, data2, data3, data4) = DEVICE_CLASS_GUID;
    let class = GUID {
        Data1: data1,
        Data2: data2,
        Data3: data3,
        Data4: data4,
    };
    let mut device: *mut DEVICE_OBJECT = ptr::null_mut();
    // SAFETY: `driver` is the I/O manager's driver object; the strings and
    // the GUID outlive the call; `device` receives the new device object.
    let status = unsafe {
        wdmsec::WdmlibIoCreateDeviceSecure(
            driver,
            core::mem::size_of::<Extension>() as u32,
            &mut device_name,
            FILE_DEVICE_UNKNOWN,
            FILE_DEVICE_SECURE_OPEN,
            0,
            &sddl,
            &class,
            &mut device,
        )
    };
    if !nt_success(status) {
        log.log(format_args!(
            "DriverEntry: IoCreateDeviceSecure failed with status {status:#x}"
        ));
        return status;
    }
    // SAFETY: the device was just created and is ours alone until
    // DO_DEVICE_INITIALIZING is cleared.
    let extension = unsafe { (*device).DeviceExtension }.cast::<Extension>();
    // SAFETY: the extension is DeviceExtensionSize = size_of::<Extension>()
    // bytes of non-paged pool, aligned for any type, and not yet initialized.
    unsafe {
        extension.write(Extension {
            device: Device::new(control),
            power: None,
        })
    };
    // SAFETY: initialized just above; the field's address is stable.
    let state = unsafe { ptr::addr_of!((*extension).device) };

    // SAFETY: PASSIVE_LEVEL; the state is initialized and outlives the
    // registration (unregistered before it is dropped, below and at unload).
    let power = match unsafe { PowerCallback::register(state, &mut log) } {
        Ok(power) => power,
        Err(status) => {
            // SAFETY: written above; no request or callback has seen it.
            unsafe { ptr::drop_in_place(extension) };
            // SAFETY: the device this entry point created, not yet in use.
            unsafe { IoDeleteDevice(device) };
            return status;
        }
    };

    let mut link = unicode(&DOS_DEVICE_NAME_UTF16);
    // SAFETY: both strings are valid for the call.
    let status = unsafe { IoCreateSymbolicLink(&mut link, &mut device_name) };
    if !nt_success(status) {
        log.log(format_args!(
            "DriverEntry: IoCreateSymbolicLink failed with status {status:#x}"
        ));
        // SAFETY: registered above; PASSIVE_LEVEL, not from the callback.
        unsafe { power.unregister() };
        // SAFETY: written above; no request has seen it, and the power
        // callback, which may have, is unregistered (no VMX entered: it
        // had nothing to do).
        unsafe { ptr::drop_in_place(extension) };
        // SAFETY: the device this entry point created, not yet in use.
        unsafe { IoDeleteDevice(device) };
        return status;
    }
    // SAFETY: the extension initialized above; the place is only named,
    // no reference to the whole extension is formed.
    let power_field = unsafe { ptr::addr_of_mut!((*extension).power) };
    // SAFETY: a field the callback never touches (it uses `device` only),
    // holding `None`, which needs no drop.
    unsafe { power_field.write(Some(power)) };

    // SAFETY: the I/O manager's driver object, ours during DriverEntry.
    let driver_ref = unsafe { &mut *driver };
    for routine in driver_ref.MajorFunction.iter_mut() {
        *routine = Some(dispatch);
    }
    driver_ref.DriverUnload = Some(driver_unload);
    // SAFETY: our device object, still initializing: no request can reach
    // it until the flag below is cleared.
    let device_ref = unsafe { &mut *device };
    device_ref.Flags |= DO_BUFFERED_IO;
    device_ref.Flags &= !DO_DEVICE_INITIALIZING;
    log.log(format_args!(
        "loaded: {processors} processors; \\\\.\\MyHypervisorDevice is ready (SYSTEM and \
         Administrators only); VMX is entered on the ENTER request, and left and entered again \
         around sleep and hibernation"
    ));
    STATUS_SUCCESS
}

/// The one dispatch routine of every major function: reads the IRP, lets
/// [`Device::dispatch`] decide, completes the IRP once with that status
/// and returns it.
///
/// # Safety
/// Called by the I/O manager with our device object and an IRP we own, at
/// PASSIVE_LEVEL (buffered IOCTLs run in the caller's thread).
unsafe extern "C" fn dispatch(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes a valid IRP owned by this driver.
    let params = unsafe { irp::params(irp) };
    // SAFETY: our device object; its extension was initialized in
    // DriverEntry before DO_DEVICE_INITIALIZING was cleared.
    let device_ref = unsafe { &*device };
    let extension = device_ref.DeviceExtension.cast::<Extension>();
    // SAFETY: see above; the state is shared, requests are serialized by
    // its Busy lock.
    let completion = unsafe { &(*extension).device }.dispatch(params, &mut DebugPrint);
    // SAFETY: the IRP is ours and not yet completed; it is not touched after.
    unsafe { irp::complete(irp, completion) }
}

/// Unregisters the power callback, leaves VMX operation wherever it was
/// entered, frees everything, and deletes the link and the device.
///
/// # Safety
/// Called by the I/O manager once no handle is open, at PASSIVE_LEVEL.
unsafe extern "C" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    let mut log = DebugPrint;
    // SAFETY: the I/O manager's driver object.
    let device = unsafe { (*driver).DeviceObject };
    let mut link = unicode(&DOS_DEVICE_NAME_UTF16);
    // SAFETY: the link DriverEntry created; the string is valid.
    let status = unsafe { IoDeleteSymbolicLink(&mut link) };
    if !nt_success(status) {
        log.log(format_args!(
            "unload: IoDeleteSymbolicLink failed with status {status:#x}"
        ));
    }
    if !device.is_null() {
        // SAFETY: our only device object, alive until IoDeleteDevice.
        let extension = unsafe { (*device).DeviceExtension }.cast::<Extension>();
        // Until the power callback is unregistered it may run and hold a
        // shared reference to the extension's `device`: no reference to the
        // whole extension may exist before that.
        // SAFETY: the extension initialized in DriverEntry; the place is
        // only named, no reference to the whole extension is formed.
        let power_field = unsafe { ptr::addr_of_mut!((*extension).power) };
        // SAFETY: a field the callback never touches (it uses `device`
        // only), and nothing else uses during unload.
        if let Some(power) = unsafe { (*power_field).take() } {
            // SAFETY: PASSIVE_LEVEL; returns once no call of the callback
            // runs, so none sees the state after this.
            unsafe { power.unregister() };
        }
        // SAFETY: initialized in DriverEntry; no request runs during unload
        // (the I/O manager unloads a driver once no handle is open) and the
        // power callback, unregistered above, runs no more: this is the
        // only reference.
        let extension = unsafe { &mut *extension };
        extension.device.unload(&mut log);
        // SAFETY: as above; dropped once, before the memory goes.
        unsafe { ptr::drop_in_place(extension) };
        // SAFETY: our device object; nothing refers to it any more.
        unsafe { IoDeleteDevice(device) };
    }
    log.log(format_args!("unloaded"));
}
