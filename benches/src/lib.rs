//! Shared helpers for Spillway benchmarks.
