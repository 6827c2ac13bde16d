//! TEST ONLY: stands in for wdk 0.5.0 in the Wine build. nt-driver depends
//! on wdk but uses none of its items, so this crate is empty.
#![no_std]
