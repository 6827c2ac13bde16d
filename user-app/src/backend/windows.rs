//! Windows: every value through the driver (nt-driver) when it is loaded;
//! CPUID alone on each processor, the thread pinned to it (as on Linux),
//! and a note saying why, when it is not.
//!
//! The driver's QUERY returns what vmx-core's diagnosis read on each
//! processor at ring 0 (CPUID, the MSRs, CR0 and CR4); each processor is
//! then diagnosed again here over a replay of those answers, so the
//! verdict is exactly the one the same diagnosis reaches on Linux. [`on`],
//! [`off`] and [`status`] are the `on`, `off` and `status` commands.
//!
//! The Win32 calls live in `vmx-ioctl-client` (this crate has no
//! `unsafe`).

use anyhow::Context;
use vmx_core::diagnosis::Observe;
use vmx_ioctl::{Ioctl, QueryReader};
use vmx_ioctl_client::windows::{DeviceHandle, affinity};
use vmx_ioctl_client::{Client, ClientError, outcome_text, status_text};

use super::processor_groups::ProcessorGroups;
use super::{CpuidOnly, Machine};

/// This Windows machine, through the driver when it can be opened.
#[derive(Debug)]
pub struct WindowsMachine {
    /// QUERY's checked reply, or why the driver could not be used.
    driver: Result<Vec<u8>, ClientError>,
    /// The processor groups, for pinning the thread without the driver.
    groups: ProcessorGroups,
}

impl Default for WindowsMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowsMachine {
    /// Opens the driver and runs QUERY once; falls back to CPUID alone on
    /// each processor when that fails.
    #[must_use]
    pub fn new() -> Self {
        let driver = DeviceHandle::open().and_then(|device| Client::new(device).query());
        let groups = ProcessorGroups::new(affinity::group_sizes());
        Self { driver, groups }
    }

    fn reader(&self) -> Option<QueryReader<'_>> {
        // The reply was checked when it arrived.
        self.driver
            .as_ref()
            .ok()
            .and_then(|reply| QueryReader::decode(reply).ok())
    }
}

impl Machine for WindowsMachine {
    fn source(&self) -> String {
        match &self.driver {
            Ok(_) => "this machine (Windows): nt-driver QUERY, CPUID, MSRs, CR0 and CR4 read at \
                      ring 0 on each processor"
                .to_owned(),
            Err(_) => "this machine (Windows): driver not used: CPUID only, on each processor \
                       (thread pinned)"
                .to_owned(),
        }
    }

    fn processors(&mut self) -> anyhow::Result<Vec<u32>> {
        match self.reader() {
            Some(reader) => Ok(reader.processors().map(|record| record.index).collect()),
            None => {
                let count = self.groups.count();
                anyhow::ensure!(count != 0, "Windows reported no active processor");
                Ok((0..count).collect())
            }
        }
    }

    fn observe(&mut self, cpu: u32, visit: &mut dyn FnMut(&mut dyn Observe)) -> anyhow::Result<()> {
        let Some(reader) = self.reader() else {
            let (group, number) = self
                .groups
                .locate(cpu)
                .with_context(|| format!("there is no processor {cpu}"))?;
            // CPUID answers for the processor the thread runs on: pin it.
            let pinned = affinity::pin(group, number).with_context(|| {
                format!("cannot run on processor {cpu} (group {group}, number {number})")
            })?;
            visit(&mut CpuidOnly);
            drop(pinned);
            return Ok(());
        };
        let record = reader
            .processors()
            .find(|record| record.index == cpu)
            .with_context(|| format!("the driver reported no processor {cpu}"))?;
        anyhow::ensure!(
            record.available,
            "the driver could not run on processor {cpu}"
        );
        visit(&mut record.replay());
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        match &self.driver {
            Ok(_) => Vec::new(),
            Err(error) => vec![format!(
                "{error}; CPUID only: IA32_FEATURE_CONTROL and CR4 not read"
            )],
        }
    }
}

fn client() -> anyhow::Result<Client<DeviceHandle>> {
    Ok(Client::new(DeviceHandle::open()?))
}

/// `on`: ENTER, VMX operation on every processor (or on none, with the
/// processor that refused and why).
///
/// # Errors
/// The driver cannot be reached, or it refused: the message says what to do.
pub fn on() -> anyhow::Result<String> {
    let outcome = client()?.enter()?;
    let text = outcome_text(Ioctl::Enter, &outcome);
    anyhow::ensure!(outcome.failure.is_none(), "{text}");
    Ok(text)
}

/// `off`: LEAVE, out of VMX operation wherever the driver entered it.
///
/// # Errors
/// As [`on`].
pub fn off() -> anyhow::Result<String> {
    let outcome = client()?.leave()?;
    let text = outcome_text(Ioctl::Leave, &outcome);
    anyhow::ensure!(outcome.failure.is_none(), "{text}");
    Ok(text)
}

/// `status`: each processor's VMX state, one line each.
///
/// # Errors
/// The driver cannot be reached.
pub fn status() -> anyhow::Result<String> {
    Ok(status_text(&client()?.status()?))
}
