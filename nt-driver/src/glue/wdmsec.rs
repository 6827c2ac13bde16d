//! `IoCreateDeviceSecure`, which wdk-sys does not bind: in C it is a macro
//! for `WdmlibIoCreateDeviceSecure`, a function of the static library
//! wdmsec.lib (linked by build.rs), declared in wdmsec.h, which wdk-sys
//! does not include.

use wdk_sys::{DEVICE_OBJECT, DRIVER_OBJECT, GUID, NTSTATUS, UNICODE_STRING};

unsafe extern "C" {
    /// `NTSTATUS WdmlibIoCreateDeviceSecure(PDRIVER_OBJECT DriverObject,
    /// ULONG DeviceExtensionSize, PUNICODE_STRING DeviceName,
    /// DEVICE_TYPE DeviceType, ULONG DeviceCharacteristics,
    /// BOOLEAN Exclusive, PCUNICODE_STRING DefaultSDDLString,
    /// LPCGUID DeviceClassGuid, PDEVICE_OBJECT *DeviceObject)`.
    pub fn WdmlibIoCreateDeviceSecure(
        DriverObject: *mut DRIVER_OBJECT,
        DeviceExtensionSize: u32,
        DeviceName: *mut UNICODE_STRING,
        DeviceType: u32,
        DeviceCharacteristics: u32,
        Exclusive: u8,
        DefaultSDDLString: *const UNICODE_STRING,
        DeviceClassGuid: *const GUID,
        DeviceObject: *mut *mut DEVICE_OBJECT,
    ) -> NTSTATUS;
}
