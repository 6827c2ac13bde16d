//! Sleep and hibernation.
//!
//! S3 (sleep) and S4 (hibernation) power the processors off: on resume
//! they come back outside VMX operation, while Windows restores CR4 as it
//! saved it, CR4.VMXE set. A driver that still records them as entered
//! would run VMXOFF on the next LEAVE or at unload: #UD outside VMX
//! operation, a bug check. So the driver registers a callback on the
//! executive callback object `\Callback\PowerState` and, on
//! `PO_CB_SYSTEM_STATE_LOCK`, leaves VMX operation on every processor
//! before the system leaves S0 and enters it again once the system is back
//! in S0, if it was entered before (HyperPlatform does the same).
//!
//! `ExRegisterCallback`'s documentation of `\Callback\PowerState`: when
//! Argument1 is `PO_CB_SYSTEM_STATE_LOCK`, Argument2 is 0 when the system
//! is about to leave S0 and 1 when it has just re-entered S0. The callback
//! runs at PASSIVE_LEVEL. What the driver then does is decided here and in
//! [`Control::suspend`](crate::Control::suspend) and
//! [`Control::resume`](crate::Control::resume), tested on the simulated
//! machine; the glue only registers the callback and forwards the event.

/// `PO_CB_SYSTEM_STATE_LOCK` (wdm.h): Argument1 of a `\Callback\PowerState`
/// notification that the system power state is about to change or has
/// changed.
pub const PO_CB_SYSTEM_STATE_LOCK: usize = 3;

/// A system power transition the driver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerEvent {
    /// The system is about to leave S0 (sleep or hibernation).
    Suspend,
    /// The system has just re-entered S0.
    Resume,
}

impl PowerEvent {
    /// The event a `\Callback\PowerState` notification carries, from its
    /// two arguments (pointer-sized values); `None` for every other kind
    /// of notification (AC/DC, lid switch, power policy).
    ///
    /// Argument2 is a BOOLEAN passed as a pointer: 0 is "about to leave S0",
    /// any other value "re-entered S0" (documented as 1).
    #[must_use]
    pub const fn from_callback(argument1: usize, argument2: usize) -> Option<Self> {
        if argument1 != PO_CB_SYSTEM_STATE_LOCK {
            return None;
        }
        Some(if argument2 == 0 {
            Self::Suspend
        } else {
            Self::Resume
        })
    }
}

/// Where the driver stands with respect to a power transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PowerState {
    /// In S0, no transition under way.
    #[default]
    Running,
    /// Between "about to leave S0" and "re-entered S0".
    Suspended {
        /// VMX operation was on before the transition: enter it again on
        /// resume.
        reenter: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_system_state_lock_notification_is_an_event() {
        assert_eq!(PowerEvent::from_callback(3, 0), Some(PowerEvent::Suspend));
        assert_eq!(PowerEvent::from_callback(3, 1), Some(PowerEvent::Resume));
        // PO_CB_AC_STATUS 1, PO_CB_BUTTON_COLLISION 2, PO_CB_LID_SWITCH_STATE
        // 4, PO_CB_PROCESSOR_POWER_POLICY 5, PO_CB_SYSTEM_POWER_POLICY 0.
        for other in [0, 1, 2, 4, 5, 6, usize::MAX] {
            assert_eq!(PowerEvent::from_callback(other, 0), None);
            assert_eq!(PowerEvent::from_callback(other, 1), None);
        }
    }
}
