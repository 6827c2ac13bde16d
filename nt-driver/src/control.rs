//! QUERY, ENTER, LEAVE, STATUS and unload, over vmx-core's platform
//! traits: the kernel's "run this on processor i" and "give me a page with
//! its physical address" are the only services used.

use alloc::vec::Vec;

use vmx_core::diagnosis::Recorder;
use vmx_core::{
    CpuObserver, OutOfMemory, PageAllocator, Processor, ProcessorError, ProcessorStatus,
    Processors, diagnose, enter_all, leave_all,
};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryWriter};

use crate::dispatch::Completion;
use crate::ioctl::{Valid, overflow};
use crate::log::Log;
use crate::ntstatus::{STATUS_INVALID_PARAMETER, STATUS_SUCCESS};

/// The VMX state of every processor, and the services to change it.
pub struct Control<Pr: Processors, A: PageAllocator> {
    processors: Pr,
    allocator: A,
    slots: Vec<Processor<A::Page>>,
}

impl<Pr: Processors, A: PageAllocator> core::fmt::Debug for Control<Pr, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control")
            .field("processors", &self.slots.len())
            .field("entered", &self.entered())
            .finish_non_exhaustive()
    }
}

impl<Pr: Processors, A: PageAllocator> Control<Pr, A> {
    /// State for every processor `processors` has, none in VMX operation.
    ///
    /// # Errors
    /// [`OutOfMemory`] when the per-processor state cannot be allocated
    /// (in the kernel an allocation failure must not panic).
    pub fn new(processors: Pr, allocator: A) -> Result<Self, OutOfMemory> {
        let count = processors.count();
        let mut slots = Vec::new();
        slots.try_reserve_exact(count).map_err(|_| OutOfMemory)?;
        slots.extend((0..count).map(|_| Processor::new()));
        Ok(Self {
            processors,
            allocator,
            slots,
        })
    }

    /// The number of logical processors.
    #[must_use]
    pub fn processor_count(&self) -> usize {
        self.slots.len()
    }

    /// How many processors are in VMX operation.
    #[must_use]
    pub fn entered(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_entered()).count()
    }

    /// Each processor's status, in order.
    pub fn statuses(&self) -> impl ExactSizeIterator<Item = ProcessorStatus> + '_ {
        self.slots.iter().map(Processor::status)
    }

    /// The services, for inspection.
    pub fn services(&self) -> (&Pr, &A) {
        (&self.processors, &self.allocator)
    }

    /// Enters VMX operation on every processor; if one fails, those before
    /// it leave again (vmx-core's [`enter_all`]).
    pub fn enter(&mut self, log: &mut dyn Log) -> Outcome {
        let before = self.entered();
        let result = enter_all(&mut self.processors, &mut self.allocator, &mut self.slots);
        let after = self.entered();
        if let Ok(count) = result {
            for (index, status) in self.statuses().enumerate() {
                if let ProcessorStatus::On {
                    region,
                    revision_id,
                    ..
                } = status
                {
                    log.log(format_args!(
                        "processor {index}: in VMX operation, VMXON region at {region:#x}, \
                         revision {revision_id:#x}"
                    ));
                }
            }
            log.log(format_args!(
                "VMX entered on every processor ({count} of {})",
                self.slots.len()
            ));
        }
        outcome("ENTER", result, after.saturating_sub(before), after, log)
    }

    /// Leaves VMX operation on every processor that entered it and frees
    /// their regions (vmx-core's [`leave_all`]).
    pub fn leave(&mut self, log: &mut dyn Log) -> Outcome {
        let before = self.entered();
        let result = leave_all(&mut self.processors, &mut self.allocator, &mut self.slots);
        let after = self.entered();
        if let Ok(count) = result {
            log.log(format_args!(
                "VMX left on every processor that had entered ({count})"
            ));
        }
        outcome("LEAVE", result, before.saturating_sub(after), after, log)
    }

    /// Records what [`diagnose`] reads on every processor into `out`
    /// (vmx-ioctl's QUERY layout). Returns the size of the whole reply,
    /// which may exceed `out`: then only the header was written in full.
    /// Reads only; changes nothing.
    pub fn query(&mut self, out: &mut [u8]) -> usize {
        let mut writer = QueryWriter::new(out);
        for index in 0..self.slots.len() {
            writer.begin_processor();
            let mut ran = false;
            let result = self.processors.run_on(index, &mut |cpu| {
                ran = true;
                let mut recorder = Recorder::new(CpuObserver(cpu), |o| writer.push(o));
                diagnose(&mut recorder);
            });
            if result.is_err() || !ran {
                writer.mark_unavailable();
            }
        }
        writer.finish()
    }

    /// Runs a validated IOCTL, writing its reply into `buffer` (the system
    /// buffer, at least `valid.output_length` bytes).
    pub fn run(&mut self, valid: Valid, buffer: &mut [u8], log: &mut dyn Log) -> Completion {
        let count = self.slots.len();
        let processors = u32::try_from(count).unwrap_or(u32::MAX);
        let Some(out) = buffer.get_mut(..valid.output_length) else {
            return Completion::status(STATUS_INVALID_PARAMETER);
        };
        let size = match valid.ioctl {
            Ioctl::Query => {
                let size = self.query(out);
                if size > out.len() {
                    return overflow(out, size, count);
                }
                size
            }
            Ioctl::Enter | Ioctl::Leave => {
                let outcome = if valid.ioctl == Ioctl::Enter {
                    self.enter(log)
                } else {
                    self.leave(log)
                };
                outcome.encode_reply(processors, out);
                Outcome::REPLY_SIZE
            }
            Ioctl::Status => match StatusEntry::encode_reply(self.statuses(), out) {
                Some(size) => size,
                None => return Completion::status(STATUS_INVALID_PARAMETER),
            },
        };
        Completion {
            status: STATUS_SUCCESS,
            information: size,
        }
    }

    /// Before the driver unloads: leaves VMX operation wherever it was
    /// entered, freeing every region. A processor that cannot leave keeps
    /// its region (freeing memory the processor still uses as its VMXON
    /// region would corrupt whatever is allocated there next): that page
    /// is leaked on purpose, and said so.
    pub fn unload(&mut self, log: &mut dyn Log) {
        if self.entered() == 0 {
            return;
        }
        let outcome = self.leave(log);
        if outcome.entered_after != 0 {
            for (index, slot) in self.slots.iter().enumerate() {
                if slot.is_entered() {
                    log.log(format_args!(
                        "processor {index} stays in VMX operation; its VMXON region is not freed"
                    ));
                }
            }
        }
    }
}

/// The reply to ENTER or LEAVE (`request`) from vmx-core's result, with
/// `after` processors in VMX operation: a success changed the processors it
/// counts, a failure is logged and changed `changed_on_failure`.
fn outcome(
    request: &str,
    result: Result<usize, ProcessorError>,
    changed_on_failure: usize,
    after: usize,
    log: &mut dyn Log,
) -> Outcome {
    match result {
        Ok(count) => Outcome {
            changed: u32::try_from(count).unwrap_or(u32::MAX),
            entered_after: u32::try_from(after).unwrap_or(u32::MAX),
            failure: None,
        },
        Err(error) => {
            log.log(format_args!(
                "{request} failed: {error}; {after} processors in VMX operation"
            ));
            Outcome::failed(&error, changed_on_failure, after)
        }
    }
}
