//! The placement planner.
