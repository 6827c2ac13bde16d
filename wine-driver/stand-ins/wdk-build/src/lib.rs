//! TEST ONLY: stands in for wdk-build 0.6.0 in the Wine build, where the
//! build script runs on Linux and so never calls it (nt-driver's build.rs
//! calls wdk-build only on a Windows host). The Wine image's link is
//! configured by `wine-driver/image/build.rs` instead. Should it be called,
//! it fails rather than pretend to have configured a WDK build.

use std::fmt;

/// Why the stand-in configured nothing.
#[derive(Debug)]
pub struct ConfigError;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "wdk-build stand-in (wine-driver/stand-ins/wdk-build): no WDK here; the real \
             wdk-build runs on a Windows host with the WDK",
        )
    }
}

impl std::error::Error for ConfigError {}

/// # Errors
/// Always: the stand-in cannot configure a WDK build.
pub fn configure_wdk_binary_build() -> Result<(), ConfigError> {
    Err(ConfigError)
}
