//! Lookup, directory loading (ConfigMap layout), `validate_files`, and hot reload.

use std::fs;
use std::path::Path;

use spillway_core::policy::{
    LookupError, PolicyErrors, PolicySet, PolicyStore, TenantPolicy, load_dir, parse_policy,
    validate_files,
};

fn policy(tenant: &str, namespaces: &str, apps: &str) -> String {
    format!(
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: {tenant} }}\nspec:\n  namespaces: [{namespaces}]\n  defaults:\n    signals: {{ qps: {{ targetPerReplica: 100 }} }}\n  apps:\n{apps}"
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).expect("write test file");
}

#[test]
fn lookup_errors_say_what_to_fix() {
    let acme = parse_policy(
        "acme.yaml",
        &policy("acme", "acme-prod, acme-staging", "    web: {}\n"),
    )
    .expect("valid");
    let set = PolicySet::from_policies(vec![acme]).expect("one tenant");
    assert!(set.lookup("acme", "web", "acme-prod").is_ok());

    let e = set.lookup("nobody", "web", "acme-prod").unwrap_err();
    assert!(matches!(e, LookupError::UnknownTenant { .. }));
    assert!(
        e.to_string()
            .contains("add a ScalingPolicy file with `metadata: { tenant: nobody }`"),
        "{e}"
    );

    let e = set.lookup("acme", "api", "acme-prod").unwrap_err();
    assert!(matches!(e, LookupError::UnknownApp { .. }));
    assert!(
        e.to_string()
            .contains("list it under `spec.apps` (an empty override `api: {}` is enough)"),
        "{e}"
    );
    assert!(e.to_string().contains("acme.yaml"), "{e}");

    let e = set.lookup("acme", "web", "default").unwrap_err();
    assert!(matches!(e, LookupError::NamespaceNotAllowed { .. }));
    assert!(
        e.to_string().contains("allowed: acme-prod, acme-staging"),
        "{e}"
    );
}

#[test]
fn a_tenant_may_be_defined_once() {
    let a = parse_policy("a.yaml", &policy("acme", "x", "    web: {}\n")).expect("valid");
    let b = parse_policy("b.yaml", &policy("acme", "y", "    api: {}\n")).expect("valid");
    let err = PolicySet::from_policies(vec![a, b]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "b.yaml:3:21: metadata.tenant: tenant `acme` is already defined in a.yaml"
        ),
        "{text}"
    );
}

#[test]
fn workloads_lists_every_app() {
    let a =
        parse_policy("a.yaml", &policy("acme", "x", "    web: {}\n    api: {}\n")).expect("valid");
    let b = parse_policy("b.yaml", &policy("shop", "y", "    cart: {}\n")).expect("valid");
    let set = PolicySet::from_policies(vec![a, b]).expect("distinct");
    let keys: Vec<String> = set.workloads().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["acme/api", "acme/web", "shop/cart"]);
}

#[cfg(unix)]
#[test]
fn load_dir_reads_a_configmap_volume() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The layout kubelet writes: real files in a timestamped dir, `..data` pointing at it,
    // and visible names linking through `..data`.
    fs::create_dir(d.join("..2026_11_24_10_00_00.1")).expect("mkdir");
    write(
        &d.join("..2026_11_24_10_00_00.1"),
        "acme.yaml",
        &policy("acme", "x", "    web: {}\n"),
    );
    write(
        &d.join("..2026_11_24_10_00_00.1"),
        "shop.yml",
        &policy("shop", "y", "    cart: {}\n"),
    );
    symlink("..2026_11_24_10_00_00.1", d.join("..data")).expect("symlink");
    symlink("..data/acme.yaml", d.join("acme.yaml")).expect("symlink");
    symlink("..data/shop.yml", d.join("shop.yml")).expect("symlink");
    write(d, "README.md", "not a policy");
    write(d, ".hidden.yaml", "not: [valid");
    symlink("..data/missing.yaml", d.join("dangling.yaml")).expect("symlink");

    let report = load_dir(d);
    assert!(report.dir_error.is_none());
    let names: Vec<String> = report
        .files
        .iter()
        .map(|f| {
            f.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["acme.yaml", "shop.yml"]);
    assert_eq!(report.policies().count(), 2);
}

#[test]
fn load_dir_reports_each_file_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "good.yaml",
        &policy("acme", "x", "    web: {}\n"),
    );
    write(
        dir.path(),
        "bad.yaml",
        &policy("shop", "y", "    cart: { replicas: { max: 0 } }\n"),
    );
    write(
        dir.path(),
        "huge.yaml",
        &"#".repeat(spillway_core::policy::MAX_POLICY_BYTES + 10),
    );
    let report = load_dir(dir.path());
    assert_eq!(report.files.len(), 3);
    assert_eq!(report.policies().count(), 1);
    let errors: Vec<String> = report.errors().map(|(_, e)| e.to_string()).collect();
    assert_eq!(errors.len(), 2);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bad.yaml:9:") && e.contains("replicas.max")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("larger than")),
        "{errors:?}"
    );
    assert!(load_dir(&dir.path().join("absent")).dir_error.is_some());
}

#[test]
fn validate_files_reports_every_problem_in_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &policy(
            "acme",
            "x",
            "    web: { replicas: { min: 9, max: 3 }, bogus: 1 }\n",
        ),
    );
    write(dir.path(), "b.yaml", &policy("shop", "y", "    cart: {}\n"));
    write(dir.path(), "c.yaml", &policy("shop", "z", "    api: {}\n"));
    let paths: Vec<_> = ["a.yaml", "b.yaml", "c.yaml", "missing.yaml"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    let reports = validate_files(&paths);
    assert_eq!(reports.len(), 4);
    let a = reports[0].result.as_ref().unwrap_err();
    assert_eq!(a.len(), 2, "{a}");
    assert!(reports[1].result.is_ok());
    let c = reports[2].result.as_ref().unwrap_err().to_string();
    assert!(c.contains("tenant `shop` is already defined in"), "{c}");
    let missing = reports[3].result.as_ref().unwrap_err().to_string();
    assert!(missing.contains("cannot open"), "{missing}");
}

#[test]
fn reload_keeps_the_last_good_version_of_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "acme.yaml",
        &policy("acme", "x", "    web: { replicas: { max: 10 } }\n"),
    );
    let store = PolicyStore::new();
    assert!(store.current().is_empty());

    let out = store.reload(d);
    assert!(out.swapped && out.errors.is_empty());
    assert_eq!(out.changed.len(), 1);
    assert_eq!(
        store
            .current()
            .lookup("acme", "web", "x")
            .expect("served")
            .replicas
            .max,
        10
    );

    // Unchanged: nothing to do.
    let out = store.reload(d);
    assert!(out.changed.is_empty() && !out.swapped);

    // Broken edit: the old version keeps serving, the error is reported and counted once.
    write(
        d,
        "acme.yaml",
        &policy("acme", "x", "    web: { replicas: { max: lots } }\n"),
    );
    let out = store.reload(d);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].1.to_string().contains("replicas.max"),
        "{}",
        out.errors[0].1
    );
    assert_eq!(
        store
            .current()
            .lookup("acme", "web", "x")
            .expect("still served")
            .replicas
            .max,
        10
    );
    assert_eq!(store.reload_errors_total(), 1);
    let status = store.status();
    assert_eq!(status[0].serving_tenant.as_deref(), Some("acme"));
    assert!(
        status[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("replicas.max"))
    );

    // Still broken, unchanged: still reported, not counted again.
    let out = store.reload(d);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(store.reload_errors_total(), 1);

    // Fixed: the new version serves and the error clears.
    write(
        d,
        "acme.yaml",
        &policy("acme", "x", "    web: { replicas: { max: 20 } }\n"),
    );
    let out = store.reload(d);
    assert!(out.errors.is_empty() && out.swapped);
    assert_eq!(
        store
            .current()
            .lookup("acme", "web", "x")
            .expect("served")
            .replicas
            .max,
        20
    );
    assert!(store.status()[0].error.is_none());

    // Removed: the tenant goes away.
    fs::remove_file(d.join("acme.yaml")).expect("rm");
    let out = store.reload(d);
    assert_eq!(out.removed.len(), 1);
    assert!(store.current().lookup("acme", "web", "x").is_err());
}

#[test]
fn reload_refuses_a_second_file_for_the_same_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "b-acme.yaml", &policy("acme", "x", "    web: {}\n"));
    let store = PolicyStore::new();
    store.reload(d);
    // A new file, sorting first, claims the same tenant: the file already serving keeps it.
    write(d, "a-acme.yaml", &policy("acme", "x", "    api: {}\n"));
    let out = store.reload(d);
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].0.ends_with("a-acme.yaml"));
    assert!(
        out.errors[0].1.to_string().contains("already defined in"),
        "{}",
        out.errors[0].1
    );
    let set = store.current();
    assert!(set.lookup("acme", "web", "x").is_ok());
    assert!(set.lookup("acme", "api", "x").is_err());
}

#[test]
fn names_that_look_like_booleans_or_numbers_stay_names() {
    let p = parse_policy(
        "n.yaml",
        &policy("no", "on, y, off", "    2048: {}\n    yes: {}\n"),
    )
    .expect("valid");
    assert_eq!(p.tenant, "no");
    assert_eq!(p.namespaces, ["on", "y", "off"]);
    assert!(p.apps.contains_key("2048") && p.apps.contains_key("yes"));
}

#[test]
fn a_conflict_resolved_elsewhere_lets_the_other_file_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", &policy("acme", "x", "    web: {}\n"));
    write(d, "b.yaml", &policy("acme", "x", "    api: {}\n"));
    let store = PolicyStore::new();
    let out = store.reload(d);
    assert_eq!(out.errors.len(), 1, "b.yaml conflicts with a.yaml");
    assert_eq!(store.reload_errors_total(), 1);
    // Unchanged files: the conflict stays reported, but is not counted again.
    assert_eq!(store.reload(d).errors.len(), 1);
    assert_eq!(store.reload_errors_total(), 1);
    // a.yaml goes away: b.yaml (unchanged) now serves acme.
    fs::remove_file(d.join("a.yaml")).expect("rm");
    let out = store.reload(d);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(store.current().lookup("acme", "api", "x").is_ok());
    assert!(store.current().lookup("acme", "web", "x").is_err());
}

/// A parser that panics on files carrying a marker, as a parser bug would on some input.
fn panicking_parser(name: &str, text: &str) -> Result<TenantPolicy, PolicyErrors> {
    if text.contains("# trips-the-bug") {
        panic!("index out of bounds in {name}");
    }
    parse_policy(name, text)
}

#[test]
fn a_panicking_reload_is_caught_counted_and_shown_and_the_last_good_policies_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "acme.yaml",
        &policy("acme", "acme-prod", "    web: {}\n"),
    );
    write(
        dir.path(),
        "globex.yaml",
        &policy("globex", "globex-prod", "    api: {}\n"),
    );
    let store = PolicyStore::new();
    let first = store.reload_with(dir.path(), &panicking_parser);
    assert!(first.errors.is_empty() && first.swapped);

    // acme's file changes to content the parser panics on; globex gains an app.
    write(
        dir.path(),
        "acme.yaml",
        &format!(
            "{}# trips-the-bug\n",
            policy("acme", "acme-prod", "    web: {}\n    api: {}\n")
        ),
    );
    write(
        dir.path(),
        "globex.yaml",
        &policy("globex", "globex-prod", "    api: {}\n    web: {}\n"),
    );
    let outcome = store.reload_with(dir.path(), &panicking_parser);
    assert_eq!(outcome.file_panics, 1);
    assert!(outcome.panicked.is_none());
    assert_eq!(store.reload_panics_total(), 1);
    assert_eq!(store.reload_errors_total(), 1);
    // The last good acme serves (web, not the new api); globex's change took effect.
    let set = store.current();
    assert!(set.lookup("acme", "web", "acme-prod").is_ok());
    assert!(set.lookup("acme", "api", "acme-prod").is_err());
    assert!(set.lookup("globex", "web", "globex-prod").is_ok());
    // Shown: the file's status names the panic and that the last good version serves.
    let status = store.status();
    let acme = status
        .iter()
        .find(|f| f.path.ends_with("acme.yaml"))
        .expect("acme listed");
    assert_eq!(acme.serving_tenant.as_deref(), Some("acme"));
    let error = acme.error.as_deref().expect("acme refused");
    assert!(
        error.contains("panicked (index out of bounds in") && error.contains("last good version"),
        "{error}"
    );

    // Unchanged content is not parsed (nor counted) again; a fix clears the error.
    store.reload_with(dir.path(), &panicking_parser);
    assert_eq!(store.reload_panics_total(), 1);
    write(
        dir.path(),
        "acme.yaml",
        &policy("acme", "acme-prod", "    web: {}\n    api: {}\n"),
    );
    let fixed = store.reload_with(dir.path(), &panicking_parser);
    assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
    assert!(store.current().lookup("acme", "api", "acme-prod").is_ok());
}
