//! nt-driver
