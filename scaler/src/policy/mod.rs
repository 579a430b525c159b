//! Tenants scaling policies.
