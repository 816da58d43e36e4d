//! The lock used for driver state (command queue, stream records, ID spaces).
//!
//! A spin lock (`spin` crate: our crates forbid `unsafe`, and `std`'s mutex is not
//! available without `std`). With the `std` feature a contended waiter yields its
//! time slice instead of busy-spinning, which matters when threads outnumber cores
//! (a preempted holder would otherwise make every waiter spin for a whole slice).

#[cfg(feature = "std")]
type Relax = spin::relax::Yield;
#[cfg(not(feature = "std"))]
type Relax = spin::relax::Spin;

/// The driver's mutex.
pub(crate) type Mutex<T> = spin::mutex::SpinMutex<T, Relax>;
