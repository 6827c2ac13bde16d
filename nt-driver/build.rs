//! On Windows, wdk-build configures the link of a WDM driver (the WDK's
//! kernel libraries, `/DRIVER`, `/ENTRY:DriverEntry`) and wdmsec.lib is
//! added for `WdmlibIoCreateDeviceSecure`. Elsewhere there is nothing to
//! configure: the crate is an ordinary library whose tests run.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()?;
    // IoCreateDeviceSecure is a macro for WdmlibIoCreateDeviceSecure, a
    // function of the static library wdmsec.lib in the WDK's km library
    // directory, which wdk-build has put on the search path.
    println!("cargo::rustc-link-lib=static=wdmsec");
    Ok(())
}

#[cfg(not(windows))]
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
