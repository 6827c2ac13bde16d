//! Running work on each logical processor, processor-group aware (more
//! than 64 processors): the thread is bound to one processor with a group
//! affinity for the duration of the work, and the work runs at
//! DISPATCH_LEVEL, so nothing preempts it between CR4's read-modify-write
//! and VMXON, or between VMXOFF and CR4's restore.
//!
//! vmx-core allocates each VMXON region before the work and frees it after
//! (`enter_all` and `leave_all` in vmx-core/src/processors.rs): the work
//! itself never allocates, frees or waits, as DISPATCH_LEVEL requires.

use vmx_arch::RealCpu;
use vmx_core::{ProcessorUnavailable, Processors};
use wdk_sys::ntddk::{
    KeGetProcessorNumberFromIndex, KeQueryActiveProcessorCountEx,
    KeRevertToUserGroupAffinityThread, KeSetSystemGroupAffinityThread,
};
use wdk_sys::{ALL_PROCESSOR_GROUPS, GROUP_AFFINITY, PROCESSOR_NUMBER};

use crate::ntstatus::nt_success;

use super::irql::AtDispatchLevel;

/// The active processors of every group, by system-wide index.
#[derive(Debug)]
pub struct GroupProcessors {
    count: usize,
}

impl GroupProcessors {
    /// The processors active now (counted once, at load).
    pub fn new() -> Self {
        // SAFETY: callable at any IRQL; ALL_PROCESSOR_GROUPS fits a USHORT.
        let count = unsafe { KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS as u16) };
        Self {
            count: count as usize,
        }
    }
}

impl Processors for GroupProcessors {
    type Cpu = RealCpu;

    fn count(&self) -> usize {
        self.count
    }

    fn run_on(
        &mut self,
        index: usize,
        work: &mut dyn FnMut(&mut RealCpu),
    ) -> Result<(), ProcessorUnavailable> {
        if index >= self.count {
            return Err(ProcessorUnavailable);
        }
        let index = u32::try_from(index).map_err(|_| ProcessorUnavailable)?;
        let mut number = PROCESSOR_NUMBER::default();
        // SAFETY: `number` is a valid out parameter.
        let status = unsafe { KeGetProcessorNumberFromIndex(index, &mut number) };
        if !nt_success(status) || number.Number >= 64 {
            return Err(ProcessorUnavailable);
        }
        let mut affinity = GROUP_AFFINITY {
            Mask: 1 << number.Number,
            Group: number.Group,
            Reserved: [0; 3],
        };
        let mut previous = GROUP_AFFINITY::default();
        // SAFETY: IRQL <= APC_LEVEL (the IOCTL and unload paths run at
        // PASSIVE_LEVEL); an active processor's affinity. On return the
        // thread runs on that processor and stays there.
        unsafe { KeSetSystemGroupAffinityThread(&mut affinity, &mut previous) };
        // SAFETY: CPL 0, and the thread stays on this processor until the
        // affinity is reverted below, after the last use of `cpu`.
        let mut cpu = unsafe { RealCpu::new() };
        {
            // SAFETY: PASSIVE_LEVEL here (KeSetSystemGroupAffinityThread
            // needs at most APC_LEVEL); the work reads and writes only
            // non-paged memory (the driver image, its non-paged pool state,
            // the METHOD_BUFFERED system buffer, the VMXON region) and never
            // waits. The IRQL is lowered again when `_raised` drops.
            let _raised = unsafe { AtDispatchLevel::raise() };
            work(&mut cpu);
        }
        // SAFETY: restores the affinity saved by the call above.
        unsafe { KeRevertToUserGroupAffinityThread(&mut previous) };
        Ok(())
    }
}
