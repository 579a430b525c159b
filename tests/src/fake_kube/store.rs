//! The fake API server's object store: objects as JSON, one global resourceVersion
//! counter, and an event log that watches replay from any resourceVersion.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// A resource collection: API group ("" for core) and plural resource name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Collection {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Collection {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Collection {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of this collection's objects, for list responses when it is empty.
    pub fn kind(&self) -> String {
        match self.resource.as_str() {
            "pods" => "Pod".into(),
            "nodes" => "Node".into(),
            "deployments" => "Deployment".into(),
            "statefulsets" => "StatefulSet".into(),
            "leases" => "Lease".into(),
            "scaledobjects" => "ScaledObject".into(),
            "poddisruptionbudgets" => "PodDisruptionBudget".into(),
            "horizontalpodautoscalers" => "HorizontalPodAutoscaler".into(),
            other => {
                let singular = other.strip_suffix('s').unwrap_or(other);
                let mut c = singular.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub collection: Collection,
    pub namespace: Option<String>,
    pub kind: &'static str,
    pub object: Value,
}

/// Why a write was refused, as the API server says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiFailure {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiFailure {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(c: &Collection, name: &str) -> Self {
        ApiFailure::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", c.resource),
        )
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message,
            "reason": self.reason, "code": self.code,
        })
    }
}

type ObjectKey = (Option<String>, String);

pub struct Store {
    rv: u64,
    objects: BTreeMap<Collection, BTreeMap<ObjectKey, Value>>,
    events: Vec<Arc<WatchEvent>>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    uid: u64,
    /// Logical clock of the simulated controllers: pod creation order.
    pub(crate) sim_seq: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            events: Vec::new(),
            tx,
            uid: 0,
            sim_seq: 0,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// Events after `since` for a collection (and namespace, when given).
    pub fn events_since(
        &self,
        c: &Collection,
        ns: Option<&str>,
        since: u64,
    ) -> Vec<Arc<WatchEvent>> {
        let start = self.events.partition_point(|e| e.rv <= since);
        self.events[start..]
            .iter()
            .filter(|e| &e.collection == c && (ns.is_none() || e.namespace.as_deref() == ns))
            .cloned()
            .collect()
    }

    pub fn list(&self, c: &Collection, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(c)
            .map(|m| {
                m.iter()
                    .filter(|((o_ns, _), _)| ns.is_none() || o_ns.as_deref() == ns)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, c: &Collection, ns: Option<&str>, name: &str) -> Option<Value> {
        self.objects
            .get(c)?
            .get(&(ns.map(str::to_string), name.to_string()))
            .cloned()
    }

    fn emit(&mut self, c: &Collection, ns: Option<&str>, kind: &'static str, object: Value) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            collection: c.clone(),
            namespace: ns.map(str::to_string),
            kind,
            object,
        });
        self.events.push(ev.clone());
        // No receivers is fine: nobody is watching yet.
        let _ = self.tx.send(ev);
    }

    fn stamp(&mut self, c: &Collection, ns: Option<&str>, obj: &mut Value) {
        self.rv += 1;
        if !obj.is_object() {
            *obj = Value::Object(Map::new());
        }
        let kind = c.kind();
        let map = obj.as_object_mut().expect("made an object above");
        map.insert("apiVersion".into(), Value::String(c.api_version()));
        map.insert("kind".into(), Value::String(kind));
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            if let Some(ns) = ns {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
            }
        }
    }

    /// Creates an object; 409 when the name is taken.
    pub fn create(
        &mut self,
        c: &Collection,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiFailure> {
        let mut name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiFailure::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value",
                ));
            }
            name = format!("{prefix}{}", self.uid + 1);
        }
        let key = (ns.map(str::to_string), name.clone());
        if self.objects.get(c).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiFailure::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", c.resource),
            ));
        }
        self.uid += 1;
        let uid = self.uid;
        self.stamp(c, ns, &mut obj);
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".into(), Value::String(name));
            meta.insert("uid".into(), Value::String(format!("uid-{uid}")));
            meta.entry("creationTimestamp")
                .or_insert_with(|| Value::String("2026-01-01T00:00:00Z".into()));
        }
        self.objects
            .entry(c.clone())
            .or_default()
            .insert(key, obj.clone());
        self.emit(c, ns, "ADDED", obj.clone());
        Ok(obj)
    }

    /// Replaces an object. A resourceVersion in the body must match the stored one
    /// (optimistic concurrency, 409 Conflict otherwise); none means unconditional.
    pub fn replace(
        &mut self,
        c: &Collection,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiFailure> {
        let key = (ns.map(str::to_string), name.to_string());
        let old = self
            .objects
            .get(c)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiFailure::not_found(c, name))?;
        let want_rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let have_rv = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if want_rv.is_some() && want_rv != have_rv {
            return Err(ApiFailure::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    c.resource
                ),
            ));
        }
        for field in ["uid", "creationTimestamp", "name"] {
            if let (Some(v), Some(meta)) = (
                old.pointer(&format!("/metadata/{field}")).cloned(),
                obj.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                meta.insert(field.into(), v);
            }
        }
        self.stamp(c, ns, &mut obj);
        self.objects
            .entry(c.clone())
            .or_default()
            .insert(key, obj.clone());
        self.emit(c, ns, "MODIFIED", obj.clone());
        Ok(obj)
    }

    pub fn delete(
        &mut self,
        c: &Collection,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiFailure> {
        let key = (ns.map(str::to_string), name.to_string());
        let mut obj = self
            .objects
            .get_mut(c)
            .and_then(|m| m.remove(&key))
            .ok_or_else(|| ApiFailure::not_found(c, name))?;
        self.stamp(c, ns, &mut obj);
        self.emit(c, ns, "DELETED", obj.clone());
        Ok(obj)
    }
}

/// Applies a PATCH body by its content type. Strategic merge is treated as JSON merge
/// patch, which is what it is for maps and for lists without a merge key (tolerations,
/// affinity terms); the `$patch`/`$retainKeys` directives and merge-keyed lists are not
/// modelled.
pub fn apply_patch(target: &mut Value, content_type: &str, body: &[u8]) -> Result<(), ApiFailure> {
    let bad = |e: String| ApiFailure::new(400, "BadRequest", e);
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "application/json-patch+json" => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            // json_patch::patch is all-or-nothing: a failed op (a `test` included)
            // leaves the document as it was.
            json_patch::patch(target, &p)
                .map_err(|e| ApiFailure::new(422, "Invalid", e.to_string()))
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let p: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            json_patch::merge(target, &p);
            Ok(())
        }
        other => Err(ApiFailure::new(
            415,
            "UnsupportedMediaType",
            format!("the fake API server does not support patch type {other:?}"),
        )),
    }
}

/// `a=b,c=d` and `a==b` label selectors; set-based selectors are rejected.
pub fn parse_selector(s: &str) -> Result<Vec<(String, String)>, ApiFailure> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|term| {
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .filter(|(k, _)| !k.ends_with('!'))
                .ok_or_else(|| {
                    ApiFailure::new(
                        400,
                        "BadRequest",
                        format!(
                            "the fake API server supports only equality selectors, not {term:?}"
                        ),
                    )
                })?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub fn labels_match(obj: &Value, selector: &[(String, String)]) -> bool {
    selector.iter().all(|(k, v)| {
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            == Some(v.as_str())
    })
}
