//! The DMA API over IOMMU domains: map/unmap page and scatterlists, coherent allocations, swiotlb, strict/lazy and the live switch
//!
//! Skeleton: filled in by its issue.
#![no_std]
