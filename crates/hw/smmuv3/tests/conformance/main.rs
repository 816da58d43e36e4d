//! Conformance tests of the SMMUv3 model: tables and queues built by hand from raw
//! bits (testkit), never by a driver.

mod commands;
mod common;
mod events;
mod fuzz_replay;
mod model_proptest;
mod sanitizer;
mod speculation;
mod translate;
