//! The driver on a simulated machine, for tests and the fuzz target:
//! vmx-core's [`sim`](vmx_core::sim) machine with CR0 and CR4 as Windows
//! runs them, and DEVICE_CONTROL requests sent the way the I/O manager
//! sends them.

use alloc::vec;
use alloc::vec::Vec;

use vmx_core::sim::{SimAllocator, SimCpu, SimMachine};

use crate::dispatch::{IRP_MJ_DEVICE_CONTROL, system_buffer_length};
use crate::log::Log;
use crate::ntstatus::nt_error;
use crate::{Completion, Control, Device, IrpParams};

/// CR0 as Windows 10 runs (PE, MP, NE, WP, AM, PG).
pub const CR0: u64 = 0x8005_0033;
/// CR4 as Windows 10 runs (VMXE clear).
pub const CR4: u64 = 0x0035_06f8;

/// The driver's device over the simulated machine.
pub type FakeDevice = Device<SimMachine, SimAllocator>;

/// `count` simulated processors with CR0 and CR4 as Windows runs them.
#[must_use]
pub fn processors(count: usize) -> SimMachine {
    SimMachine::of(count, &SimCpu::booted(CR0, CR4))
}

/// The device over `processors` and `allocator`, none in VMX operation.
///
/// # Panics
/// When the per-processor state cannot be allocated.
#[must_use]
pub fn device(processors: SimMachine, allocator: SimAllocator) -> FakeDevice {
    Device::new(Control::new(processors, allocator).expect("memory for the processors' state"))
}

/// Sends an IOCTL as the I/O manager does for METHOD_BUFFERED: one system
/// buffer of max(input, output) bytes, input first, none at all for a code
/// of another method. Returns the completion and the bytes the caller
/// receives: `Information` of them, none when the status is an error.
///
/// # Panics
/// When the completion breaks the I/O manager's rules: `Information`
/// beyond the output buffer, or non-zero with an error status.
pub fn device_control<Pr: vmx_core::Processors, A: vmx_core::PageAllocator>(
    device: &Device<Pr, A>,
    code: u32,
    input: &[u8],
    output: usize,
    log: &mut dyn Log,
) -> (Completion, Vec<u8>) {
    let input_length = u32::try_from(input.len()).unwrap_or(u32::MAX);
    let output_length = u32::try_from(output).unwrap_or(u32::MAX);
    let length = system_buffer_length(IRP_MJ_DEVICE_CONTROL, code, input_length, output_length);
    let mut system = vec![0u8; length.unwrap_or(0)];
    let n = input.len().min(system.len());
    system[..n].copy_from_slice(&input[..n]);
    let completion = device.dispatch(
        IrpParams {
            major: IRP_MJ_DEVICE_CONTROL,
            code,
            input_length,
            output_length,
            file_name_length: 0,
            buffer: length.map(|_| system.as_mut_slice()),
        },
        log,
    );
    assert!(
        completion.information <= output,
        "Information within the output buffer"
    );
    if nt_error(completion.status) {
        assert_eq!(completion.information, 0, "no Information with an error");
        system.clear();
    } else {
        system.truncate(completion.information);
    }
    (completion, system)
}
