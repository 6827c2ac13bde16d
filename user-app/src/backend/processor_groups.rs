//! Windows numbers a logical processor by its processor group and its
//! number in the group (at most 64 per group: the width of an affinity
//! mask). The checker numbers processors `0..` across groups, group after
//! group, as the kernel's `KeGetProcessorNumberFromIndex` orders them, so
//! that processor `i` without the driver is processor `i` of the driver's
//! QUERY.

/// The active processors of each group, in group order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessorGroups {
    sizes: Vec<u32>,
}

/// The processors one group's affinity mask can name.
const PER_GROUP: u32 = 64;

impl ProcessorGroups {
    /// Groups with `sizes[g]` active processors in group `g`
    /// (`GetActiveProcessorCount(g)` for `g` below
    /// `GetActiveProcessorGroupCount()`).
    #[must_use]
    pub fn new(sizes: Vec<u32>) -> Self {
        Self { sizes }
    }

    /// The number of processors that can be reached: those of every group
    /// that a one-processor affinity mask can name.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.sizes
            .iter()
            .map(|&size| size.min(PER_GROUP))
            .fold(0, u32::saturating_add)
    }

    /// Processor `index` as (group, number in the group), or `None` beyond
    /// the last one.
    #[must_use]
    pub fn locate(&self, index: u32) -> Option<(u16, u8)> {
        let mut first = 0u32;
        for (group, &size) in self.sizes.iter().enumerate() {
            let size = size.min(PER_GROUP);
            if index >= first && index - first < size {
                let group = u16::try_from(group).ok()?;
                let number = u8::try_from(index - first).ok()?;
                return Some((group, number));
            }
            first = first.checked_add(size)?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_numbers_processors_as_indices() {
        let groups = ProcessorGroups::new(vec![4]);
        assert_eq!(groups.count(), 4);
        let located: Vec<_> = (0..5).map(|i| groups.locate(i)).collect();
        assert_eq!(
            located,
            [Some((0, 0)), Some((0, 1)), Some((0, 2)), Some((0, 3)), None]
        );
    }

    #[test]
    fn indices_run_group_after_group() {
        // A 72-processor machine: Windows makes groups of 64 and 8 (or, on
        // two NUMA nodes, 36 and 36).
        let groups = ProcessorGroups::new(vec![64, 8]);
        assert_eq!(groups.count(), 72);
        assert_eq!(groups.locate(63), Some((0, 63)));
        assert_eq!(groups.locate(64), Some((1, 0)));
        assert_eq!(groups.locate(71), Some((1, 7)));
        assert_eq!(groups.locate(72), None);
        let groups = ProcessorGroups::new(vec![36, 36]);
        assert_eq!(groups.locate(35), Some((0, 35)));
        assert_eq!(groups.locate(36), Some((1, 0)));
    }

    #[test]
    fn no_group_means_no_processor_and_a_group_never_exceeds_its_mask() {
        assert_eq!(ProcessorGroups::default().count(), 0);
        assert_eq!(ProcessorGroups::default().locate(0), None);
        // A size beyond 64 cannot be named by one mask: the extra are not
        // reachable, and the next group starts at 64.
        let groups = ProcessorGroups::new(vec![70, 2]);
        assert_eq!(groups.count(), 66);
        assert_eq!(groups.locate(64), Some((1, 0)));
        assert_eq!(groups.locate(u32::MAX), None);
    }
}
