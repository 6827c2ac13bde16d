//! On Windows, wdk-build configures the link of a WDM driver (the WDK's
//! kernel libraries, `/DRIVER`, `/ENTRY:DriverEntry`) and wdmsec.lib is
//! added for `WdmlibIoCreateDeviceSecure`. Elsewhere there is nothing to
//! configure: the crate is an ordinary library whose tests run.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()?;
    // IoCreateDeviceSecure is a macro for WdmlibIoCreateDeviceSecure, a
    // function of the static library wdmsec.lib in the WDK's km library
    // directory, which wdk-build has put on the search path. `-bundle`, as
    // wdk-sys links the kernel libraries: the crate is also an rlib, and
    // the default `+bundle` would copy the WDK's library into it; with
    // `-bundle` the final link of the driver image names wdmsec.lib and
    // finds it on the same search path.
    println!("cargo::rustc-link-lib=static:-bundle=wdmsec");
    Ok(())
}

#[cfg(not(windows))]
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
