//! Tenant policies for the tests: tenant `acme`, bound to namespace `acme-prod`, whose
//! ScaledObjects the tests reference.

/// A policy for tenant `acme` whose `defaults` block is `defaults` (YAML, written flush
/// left) and whose apps are `apps`, each with no overrides.
pub fn acme_policy(defaults: &str, apps: &[&str]) -> String {
    let mut text = String::from(
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\nspec:\n  namespaces: [acme-prod]\n  defaults:\n",
    );
    for line in defaults.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("  apps:\n");
    for app in apps {
        text.push_str(&format!("    {app}: {{}}\n"));
    }
    text
}
