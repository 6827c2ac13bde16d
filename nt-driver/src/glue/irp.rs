//! Reading and completing an IRP. wdk-sys has neither
//! `IoGetCurrentIrpStackLocation` (a FORCEINLINE in wdm.h) nor the
//! `IoCompleteRequest` macro: these are their Rust forms.

use core::slice;

use wdk_sys::ntddk::IofCompleteRequest;
use wdk_sys::{IO_NO_INCREMENT, IO_STACK_LOCATION, IRP, NTSTATUS};

use crate::dispatch::{
    Completion, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IrpParams, system_buffer_length,
};

/// `IoGetCurrentIrpStackLocation`: `Irp->Tail.Overlay.CurrentStackLocation`.
///
/// # Safety
/// `irp` is a valid IRP owned by the calling driver.
pub unsafe fn current_stack_location(irp: &IRP) -> *mut IO_STACK_LOCATION {
    debug_assert!(irp.CurrentLocation <= irp.StackCount + 1);
    // SAFETY: while a driver owns the IRP, Tail.Overlay is the member of
    // the Tail union in use.
    let overlay = unsafe { &irp.Tail.Overlay };
    // SAFETY: as above; CurrentStackLocation (not PacketType) is the member
    // in use for an IRP being dispatched.
    unsafe {
        overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    }
}

/// What [`crate::Device::dispatch`] needs from the IRP.
///
/// # Safety
/// `irp` is a valid IRP owned by the calling driver, not yet completed;
/// the returned buffer lives until the IRP is completed.
pub unsafe fn params<'a>(irp: *mut IRP) -> IrpParams<'a> {
    // SAFETY: valid and owned, by the caller's contract.
    let irp = unsafe { &*irp };
    // SAFETY: as above.
    let stack = unsafe { current_stack_location(irp) };
    // SAFETY: the current stack location of an IRP being dispatched.
    let stack = unsafe { &*stack };
    let major = stack.MajorFunction;
    let (code, input_length, output_length) = if major == IRP_MJ_DEVICE_CONTROL {
        // SAFETY: for IRP_MJ_DEVICE_CONTROL, Parameters.DeviceIoControl is
        // the member of the Parameters union in use.
        let ioctl = unsafe { stack.Parameters.DeviceIoControl };
        (
            ioctl.IoControlCode,
            ioctl.InputBufferLength,
            ioctl.OutputBufferLength,
        )
    } else {
        (0, 0, 0)
    };
    let file_name_length = if major == IRP_MJ_CREATE && !stack.FileObject.is_null() {
        // SAFETY: for IRP_MJ_CREATE, FileObject is the file object being
        // opened, valid while the IRP is dispatched; its FileName is the
        // remainder of the path after the device's name.
        unsafe { (*stack.FileObject).FileName.Length }
    } else {
        0
    };
    let buffer =
        system_buffer_length(major, code, input_length, output_length).and_then(|length| {
            // SAFETY: for a METHOD_BUFFERED request, AssociatedIrp.SystemBuffer
            // is the member in use.
            let system = unsafe { irp.AssociatedIrp.SystemBuffer }.cast::<u8>();
            if system.is_null() {
                return None;
            }
            // SAFETY: the I/O manager allocated max(input, output) bytes of
            // non-paged pool for a METHOD_BUFFERED request, owned by this IRP
            // until it is completed; nothing else touches them meanwhile.
            Some(unsafe { slice::from_raw_parts_mut(system, length) })
        });
    IrpParams {
        major,
        code,
        input_length,
        output_length,
        file_name_length,
        buffer,
    }
}

/// Completes the IRP with `completion` and returns its status: the
/// dispatch routine's return value.
///
/// # Safety
/// `irp` is a valid IRP owned by the calling driver, not yet completed,
/// with no buffer borrowed from it still alive; it must not be touched
/// after this call.
pub unsafe fn complete(irp: *mut IRP, completion: Completion) -> NTSTATUS {
    let status: NTSTATUS = completion.status;
    // SAFETY: valid and owned, by the caller's contract.
    let irp_ref = unsafe { &mut *irp };
    irp_ref.IoStatus.__bindgen_anon_1.Status = status;
    irp_ref.IoStatus.Information = completion.information as u64;
    // SAFETY: completing the IRP once; IO_NO_INCREMENT fits a CCHAR.
    unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT as i8) };
    status
}
