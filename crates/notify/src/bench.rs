//! Benchmark functions (placeholder replaced below).
