//! spillway-core's integration tests in one binary (one link instead of one per file):
//! each module tests one part of the core through its public API.

mod support;

mod engine_clock_jump;
mod engine_hpa_reference;
mod engine_properties;
mod engine_rules;
mod placement_drain_props;
mod placement_plan;
mod placement_plan_props;
mod placement_scenario;
mod placement_sim_props;
mod policy_errors;
mod policy_examples;
mod policy_store;
mod simulate_replay;
