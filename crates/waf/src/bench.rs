//! Benchmarks (no timed tests): inspection cost per request, and corpus check time.
