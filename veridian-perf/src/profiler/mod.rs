//! A sampling profiler for kernels: a timer (or PMU overflow) interrupt records where the CPU
//! was, a drain thread turns the records into a flame graph.
//!
//! - [`Sample`]: a fixed-size record (timestamp, CPU, thread, instruction pointer and up to
//!   [`MAX_DEPTH`] return addresses), so the interrupt handler never allocates.
//! - [`ring::SampleRing`]: the lock-free SPSC ring the handler writes into (one per CPU);
//!   overflow drops the new sample and counts it, never corrupts one.
//! - [`unwind::walk_frame_pointers`]: the stack, from frame pointers, guarded by the embedder's
//!   [`AddressCheck`].
//! - [`rate::AdaptiveRate`]: the sampling period that keeps the profiler's cost within a budget.
//! - [`symbol::Symbolizer`]: the embedder's hook for frame names.
//! - [`folded`]: folded-stack text that `inferno`/`flamegraph.pl` turn into an SVG.
//! - [`Sampler`]: the interrupt-side glue of all of the above.

pub mod folded;
pub mod rate;
pub mod ring;
pub mod symbol;
pub mod unwind;

use crate::clock::CycleCounter;
use crate::env::{AddressCheck, CpuIndex};
use rate::AdaptiveRate;
use ring::Producer;

/// The most return addresses one sample holds: deep enough for kernel paths (syscall → VFS →
/// driver is rarely past 20), small enough that a sample is 288 bytes.
pub const MAX_DEPTH: usize = 32;

/// One sample: where one CPU was at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When (cycle counter of the sampler, e.g. the TSC).
    pub timestamp: u64,
    /// The interrupted instruction pointer (the leaf frame).
    pub ip: u64,
    /// The interrupted thread, as the embedder numbers them.
    pub thread: u64,
    /// The CPU the sample was taken on.
    pub cpu: u32,
    depth: u32,
    frames: [u64; MAX_DEPTH],
}

impl Sample {
    /// A sample with an empty stack.
    pub const fn new(timestamp: u64, cpu: u32, thread: u64, ip: u64) -> Self {
        Self {
            timestamp,
            ip,
            thread,
            cpu,
            depth: 0,
            frames: [0; MAX_DEPTH],
        }
    }

    /// The return addresses, innermost first.
    pub fn stack(&self) -> &[u64] {
        &self.frames[..(self.depth as usize).min(MAX_DEPTH)]
    }

    /// Sets the stack to `frames` (innermost first), keeping at most [`MAX_DEPTH`]; returns how
    /// many were kept.
    pub fn set_stack(&mut self, frames: &[u64]) -> usize {
        let n = frames.len().min(MAX_DEPTH);
        self.frames[..n].copy_from_slice(&frames[..n]);
        self.depth = n as u32;
        n
    }

    /// Fills the stack by walking frame pointers from `fp` (see [`unwind`]).
    pub fn walk_stack(&mut self, fp: usize, check: &impl AddressCheck) -> usize {
        let n = unwind::walk_frame_pointers(fp, check, &mut self.frames);
        self.depth = n as u32;
        n
    }

    /// Fills the stack by walking frame pointers from `fp`, reading each frame's two words with
    /// `read_frame` (see [`unwind::walk_frame_pointers_with`]).
    pub fn walk_stack_with(
        &mut self,
        fp: usize,
        read_frame: impl FnMut(usize) -> Option<(usize, usize)>,
    ) -> usize {
        let n = unwind::walk_frame_pointers_with(fp, read_frame, &mut self.frames);
        self.depth = n as u32;
        n
    }
}

/// The interrupt side of the profiler for one CPU: builds a [`Sample`] from the interrupted
/// context, pushes it into the ring and returns the next sampling period.
#[derive(Debug)]
pub struct Sampler<'a, A, C, P, const N: usize>
where
    A: AddressCheck,
    C: CycleCounter,
    P: CpuIndex,
{
    producer: Producer<'a, Sample, N>,
    check: A,
    clock: C,
    cpu: P,
    rate: AdaptiveRate,
}

impl<'a, A: AddressCheck, C: CycleCounter, P: CpuIndex, const N: usize> Sampler<'a, A, C, P, N> {
    /// Puts the pieces together.
    pub fn new(
        producer: Producer<'a, Sample, N>,
        check: A,
        clock: C,
        cpu: P,
        rate: AdaptiveRate,
    ) -> Self {
        Self {
            producer,
            check,
            clock,
            cpu,
            rate,
        }
    }

    /// Call from the sampling interrupt with the interrupted `ip`, frame pointer `fp` and
    /// thread. Returns the period until the next sample (in the clock's unit), chosen so that
    /// the measured cost of this function stays within the budget. Never allocates or blocks;
    /// a full ring drops this sample (counted in the ring).
    pub fn on_interrupt(&mut self, ip: u64, fp: usize, thread: u64) -> u64 {
        let t0 = self.clock.start();
        let cpu = u32::try_from(self.cpu.current_cpu()).unwrap_or(u32::MAX);
        let mut sample = Sample::new(t0, cpu, thread, ip);
        sample.walk_stack(fp, &self.check);
        self.producer.push(&sample);
        let t1 = self.clock.stop();
        self.rate.record_cost(t1.wrapping_sub(t0))
    }

    /// The rate controller (for its period, average cost and budget state).
    pub fn rate(&self) -> &AdaptiveRate {
        &self.rate
    }

    /// Samples dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.producer.ring().dropped()
    }
}
