//! Platform simulator: SMMUv3 models, device models, workloads, oracles and the scenario interpreter
//!
//! Skeleton: filled in by its issue.
#![no_std]
