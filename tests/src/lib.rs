//! Support for Spillway end-to-end tests.
