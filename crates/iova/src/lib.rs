//! IOVA allocator with per-CPU magazine caches and flush queues
//!
//! Skeleton: filled in by its issue.
#![no_std]
