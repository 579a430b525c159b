//! The fake API server's HTTP side: Kubernetes' REST paths, verbs and JSON bodies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::store::{ApiFailure, Collection, WatchEvent, apply_patch, labels_match, parse_selector};
use super::{Inner, Recorded};

/// Longest a watch stays open, whatever `timeoutSeconds` asks; clients re-watch.
const MAX_WATCH: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 4 << 20;

/// One request, parsed from its path and method.
#[derive(Debug, Clone)]
pub struct Target {
    pub collection: Collection,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, more @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*r];
            v.extend_from_slice(more);
            v
        }),
        r => (None, r.to_vec()),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: Collection::new(group, version, resource),
        namespace,
        name,
        subresource: sub,
    })
}

fn query_param(q: Option<&str>, key: &str) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn failure(f: &ApiFailure) -> Response {
    json_response(f.code, &f.status())
}

fn verb_of(method: &Method, t: &Target, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if t.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

pub async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(t) = parse_path(&path) else {
        return failure(&ApiFailure::new(
            404,
            "NotFound",
            format!("no route {path}"),
        ));
    };
    let watch = matches!(
        query_param(query.as_deref(), "watch").as_deref(),
        Some("true" | "1")
    );
    let verb = verb_of(&method, &t, watch);
    let record = Recorded {
        verb: verb.to_string(),
        group: t.collection.group.clone(),
        resource: match &t.subresource {
            Some(s) => format!("{}/{s}", t.collection.resource),
            None => t.collection.resource.clone(),
        },
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    };
    if let Some(f) = inner.record_and_check_fault(record) {
        return failure(&f);
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return failure(&ApiFailure::new(400, "BadRequest", e.to_string())),
    };
    let selector = match query_param(query.as_deref(), "labelSelector")
        .map(|s| parse_selector(&s))
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(f) => return failure(&f),
    };
    let ns = t.namespace.as_deref();
    let c = &t.collection;
    let result = match (verb, t.name.as_deref(), t.subresource.as_deref()) {
        ("watch", None, None) => {
            let since = query_param(query.as_deref(), "resourceVersion")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let timeout = query_param(query.as_deref(), "timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(MAX_WATCH, |s| Duration::from_secs(s).min(MAX_WATCH));
            return watch_response(
                &inner,
                c.clone(),
                t.namespace.clone(),
                selector,
                since,
                timeout,
            );
        }
        ("list", None, None) => {
            let store = inner.lock();
            let items: Vec<Value> = store
                .list(c, ns)
                .into_iter()
                .filter(|o| labels_match(o, &selector))
                .collect();
            Ok(json!({
                "apiVersion": c.api_version(),
                "kind": format!("{}List", c.kind()),
                "metadata": {"resourceVersion": store.resource_version().to_string()},
                "items": items,
            }))
        }
        ("get", Some(name), None) => inner
            .lock()
            .get(c, ns, name)
            .ok_or_else(|| ApiFailure::not_found(c, name)),
        ("get", Some(name), Some("scale")) => scale_of(&inner, c, ns, name),
        ("create", None, None) => parse_body(&body).and_then(|obj| inner.lock().create(c, ns, obj)),
        ("create", Some(name), Some("eviction")) => {
            let dry_run = query_param(query.as_deref(), "dryRun").is_some()
                || parse_body(&body).is_ok_and(|b| {
                    b.pointer("/deleteOptions/dryRun")
                        .and_then(Value::as_array)
                        .is_some_and(|d| !d.is_empty())
                });
            evict(&inner, c, ns, name, dry_run)
        }
        ("update", Some(name), None) => {
            parse_body(&body).and_then(|obj| inner.lock().replace(c, ns, name, obj))
        }
        ("patch", Some(name), None) => {
            let mut store = inner.lock();
            store
                .get(c, ns, name)
                .ok_or_else(|| ApiFailure::not_found(c, name))
                .and_then(|mut obj| {
                    apply_patch(&mut obj, &content_type, &body)?;
                    // A patch is not a compare-and-swap unless it carries its own test.
                    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    store.replace(c, ns, name, obj)
                })
        }
        ("patch", Some(name), Some("scale")) => {
            patch_scale(&inner, c, ns, name, &content_type, &body)
        }
        ("delete", Some(name), None) => inner.lock().delete(c, ns, name),
        _ => Err(ApiFailure::new(
            405,
            "MethodNotAllowed",
            format!("the fake API server does not serve {verb} on {path}"),
        )),
    };
    match result {
        Ok(v) => json_response(if verb == "create" { 201 } else { 200 }, &v),
        Err(f) => failure(&f),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiFailure> {
    serde_json::from_slice(body).map_err(|e| ApiFailure::new(400, "BadRequest", e.to_string()))
}

fn scale_of(
    inner: &Inner,
    c: &Collection,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiFailure> {
    let obj = inner
        .lock()
        .get(c, ns, name)
        .ok_or_else(|| ApiFailure::not_found(c, name))?;
    Ok(scale_json(&obj))
}

/// The `autoscaling/v1` Scale a Deployment or StatefulSet presents.
pub fn scale_json(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_u64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn patch_scale(
    inner: &Inner,
    c: &Collection,
    ns: Option<&str>,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiFailure> {
    let mut store = inner.lock();
    let mut obj = store
        .get(c, ns, name)
        .ok_or_else(|| ApiFailure::not_found(c, name))?;
    let mut scale = scale_json(&obj);
    apply_patch(&mut scale, content_type, body)?;
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            ApiFailure::new(
                422,
                "Invalid",
                "spec.replicas: must be a non-negative integer",
            )
        })?;
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let obj = store.replace(c, ns, name, obj)?;
    Ok(scale_json(&obj))
}

/// The Eviction API: refuses (429) when a PodDisruptionBudget selecting the pod would
/// drop below its `minAvailable` or above its `maxUnavailable` (integers only). A dry
/// run answers the same and deletes nothing.
fn evict(
    inner: &Inner,
    c: &Collection,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
) -> Result<Value, ApiFailure> {
    let mut store = inner.lock();
    let pod = store
        .get(c, ns, name)
        .ok_or_else(|| ApiFailure::not_found(c, name))?;
    let pods = store.list(c, ns);
    let pdbs = store.list(&Collection::new("policy", "v1", "poddisruptionbudgets"), ns);
    for pdb in &pdbs {
        let sel: Vec<(String, String)> = pdb
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if sel.is_empty() || !labels_match(&pod, &sel) {
            continue;
        }
        let matching: Vec<&Value> = pods.iter().filter(|p| labels_match(p, &sel)).collect();
        let healthy = matching.iter().filter(|p| super::pod_ready(p)).count() as i64;
        let expected = matching.len() as i64;
        let target_ready = super::pod_ready(&pod);
        let allowed = if let Some(min) = pdb.pointer("/spec/minAvailable").and_then(Value::as_i64) {
            !target_ready || healthy > min
        } else if let Some(max) = pdb.pointer("/spec/maxUnavailable").and_then(Value::as_i64) {
            !target_ready || expected - healthy < max
        } else {
            true
        };
        if !allowed {
            let pdb_name = pdb
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(ApiFailure::new(
                429,
                "TooManyRequests",
                format!(
                    "Cannot evict pod as it would violate the pod's disruption budget {pdb_name:?}"
                ),
            ));
        }
    }
    if !dry_run {
        store.delete(c, ns, name)?;
    }
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn watch_response(
    inner: &Arc<Inner>,
    c: Collection,
    ns: Option<String>,
    selector: Vec<(String, String)>,
    since: u64,
    timeout: Duration,
) -> Response {
    let (backlog, rx) = {
        let store = inner.lock();
        (
            store.events_since(&c, ns.as_deref(), since),
            store.subscribe(),
        )
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut closed = inner.watch_generation.subscribe();
    closed.mark_unchanged();
    let last = backlog.last().map_or(since, |e| e.rv);
    struct S {
        backlog: VecDeque<Arc<WatchEvent>>,
        rx: broadcast::Receiver<Arc<WatchEvent>>,
        last: u64,
        closed: tokio::sync::watch::Receiver<u64>,
    }
    let keep = move |e: &WatchEvent, last: u64| {
        e.rv > last
            && e.collection == c
            && (ns.is_none() || e.namespace == ns)
            && labels_match(&e.object, &selector)
    };
    let keep_backlog = keep.clone();
    let state = S {
        backlog: backlog
            .into_iter()
            .filter(|e| keep_backlog(e, since))
            .collect(),
        rx,
        last,
        closed,
    };
    let stream = futures::stream::unfold(state, move |mut s| {
        let keep = keep.clone();
        async move {
            if let Some(e) = s.backlog.pop_front() {
                return Some((line(&e), s));
            }
            loop {
                let next = tokio::select! {
                    r = tokio::time::timeout_at(deadline, s.rx.recv()) => r,
                    _ = s.closed.changed() => return None,
                };
                match next {
                    Ok(Ok(e)) if keep(&e, s.last) => {
                        s.last = e.rv;
                        return Some((line(&e), s));
                    }
                    Ok(Ok(_)) => {}
                    // Lagged or closed: end the watch; the client re-lists or re-watches.
                    Ok(Err(_)) | Err(_) => return None,
                }
            }
        }
    })
    .map(Ok::<Bytes, Infallible>);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn line(e: &WatchEvent) -> Bytes {
    let mut s = json!({"type": e.kind, "object": e.object}).to_string();
    s.push('\n');
    Bytes::from(s)
}
