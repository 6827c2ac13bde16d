//! The device: every IRP the glue receives goes through
//! [`Device::dispatch`], which returns how to complete it.

use vmx_core::{PageAllocator, Processors};

use crate::busy::Busy;
use crate::control::Control;
use crate::dispatch::{Action, Completion, IrpParams, action, complete_other};
use crate::ioctl::validate;
use crate::log::Log;
use crate::ntstatus::{STATUS_DEVICE_BUSY, STATUS_INVALID_PARAMETER, nt_success};
use crate::power::PowerEvent;

/// The driver's state, kept in the device extension.
pub struct Device<Pr: Processors, A: PageAllocator> {
    processors: usize,
    pub(crate) control: Busy<Control<Pr, A>>,
}

impl<Pr: Processors, A: PageAllocator> core::fmt::Debug for Device<Pr, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("processors", &self.processors)
            .finish_non_exhaustive()
    }
}

impl<Pr: Processors, A: PageAllocator> Device<Pr, A> {
    /// A device over `control`.
    pub fn new(control: Control<Pr, A>) -> Self {
        Self {
            processors: control.processor_count(),
            control: Busy::new(control),
        }
    }

    /// Decides an IRP: runs it when it is a valid IOCTL, and returns the
    /// completion the glue applies (once, with this status).
    pub fn dispatch(&self, irp: IrpParams<'_>, log: &mut dyn Log) -> Completion {
        match action(irp.major) {
            Action::Open if irp.file_name_length != 0 => {
                log.log(format_args!(
                    "refused an open of a name below the device ({} bytes): the device has \
                     no namespace",
                    irp.file_name_length
                ));
                complete_other(irp.major, irp.file_name_length)
            }
            Action::Open | Action::Succeed | Action::Refuse => {
                complete_other(irp.major, irp.file_name_length)
            }
            Action::DeviceControl => self.device_control(irp, log),
        }
    }

    fn device_control(&self, mut irp: IrpParams<'_>, log: &mut dyn Log) -> Completion {
        let valid = match validate(
            irp.code,
            irp.input_length,
            irp.output_length,
            irp.buffer.as_deref_mut(),
            self.processors,
        ) {
            Ok(valid) => valid,
            Err(completion) => {
                if !nt_success(completion.status) {
                    log.log(format_args!(
                        "IOCTL {:#x} (input {}, output {}) completed with status {:#x}",
                        irp.code, irp.input_length, irp.output_length, completion.status
                    ));
                }
                return completion;
            }
        };
        let Some(buffer) = irp.buffer else {
            return Completion::status(STATUS_INVALID_PARAMETER);
        };
        let Some(mut control) = self.control.try_lock() else {
            log.log(format_args!(
                "{}: busy with another request",
                valid.ioctl.name()
            ));
            return Completion::status(STATUS_DEVICE_BUSY);
        };
        control.run(valid, buffer, log)
    }

    /// A sleep or hibernation: leaves VMX operation before it, enters it
    /// again after it (see [`crate::power`]). Waits for a request that is
    /// running, calling `wait` between tries: the transition must not
    /// proceed with VMX operation on.
    pub fn power(&self, event: PowerEvent, log: &mut dyn Log, wait: &mut dyn FnMut()) {
        let mut control = self.control.lock(wait);
        match event {
            PowerEvent::Suspend => control.suspend(log),
            PowerEvent::Resume => control.resume(log),
        }
    }

    /// Before the driver unloads (no request can be running: the I/O
    /// manager unloads a driver only when no handle is open).
    pub fn unload(&mut self, log: &mut dyn Log) {
        self.control.get_mut().unload(log);
    }

    /// The state, through exclusive access.
    pub fn control_mut(&mut self) -> &mut Control<Pr, A> {
        self.control.get_mut()
    }
}
