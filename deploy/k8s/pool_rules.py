"""Checks of the inference-pool overlay for check_manifests.py: the kinds the
python3-kubernetes models do not know (InferencePool, HTTPRoute) against
their required fields and enums, the endpoint picker (EPP) and its
configuration, and how they fit the spikeserve Deployment.

Sources of the rules (read, not copied): the InferencePool v1 API
(kubernetes-sigs/gateway-api-inference-extension api/v1/inferencepool_types.go),
Gateway API v1 HTTPRoute, and the llm-d router's EPP (llm-d/llm-d-router
pkg/epp/server/options.go for its flags,
pkg/epp/framework/plugins/datalayer/{source,extractor}/metrics for the
metrics source and the engine metric names).
"""
import os
import re

import yaml

POOL_GROUP = "inference.networking.k8s.io"
POOL_API = POOL_GROUP + "/v1"
EPP_CONFIG_API = "llm-d.ai/v1alpha1"
# Flags the EPP refuses at start-up since GAIE v1.4 and in the llm-d router
# ("configure metrics via engineConfigs in EndpointPickerConfig instead").
REFUSED_EPP_FLAGS = ("total-queued-requests-metric",
                     "total-running-requests-metric",
                     "kv-cache-usage-percentage-metric",
                     "lora-info-metric", "cache-info-metric",
                     "model-server-metrics-port")
EPP_DEFAULT_GRPC_PORT = 9002
# The EPP's engines with built-in metric names (none of them spikeserve's).
BUILTIN_ENGINES = ("vllm", "sglang", "trtllm-serve", "triton-tensorrt-llm",
                   "triton")
ENGINE_LABELS = ("llm-d.ai/engine-type", "inference.networking.k8s.io/engine-type")
# What each EPP metric means, and the spikeserve gauge with that meaning
# (docs/design.md, metrics contract).
EPP_METRICS = {
    "queuedRequestsSpec": "spikeserve_requests_waiting",
    "runningRequestsSpec": "spikeserve_requests_running",
    "kvUsageSpec": "spikeserve_kv_cache_usage_ratio",
}

# Schemas of the CRD kinds, as nested Python values: a dict is an object
# (a key ending in "!" is required), a one-item list a list of that item,
# a string a scalar type: str, int, bool, port (1..65535), labels (a
# non-empty map of strings), duration (Gateway API), any, or enum:a|b.
_PORT = {"number!": "port"}
INFERENCE_POOL = {
    "apiVersion!": "str", "kind!": "str", "metadata!": "any",
    "spec!": {
        "selector!": {"matchLabels!": "labels"},
        "targetPorts!": [_PORT],
        "appProtocol": "enum:http|kubernetes.io/h2c",
        "endpointPickerRef": {
            "group": "str", "kind": "str", "name!": "str", "port": _PORT,
            "failureMode": "enum:FailOpen|FailClose",
        },
    },
    "status": "any",
}
_HEADER_MATCH = {"type": "enum:Exact|RegularExpression", "name!": "str",
                 "value!": "str"}
HTTP_ROUTE = {
    "apiVersion!": "str", "kind!": "str", "metadata!": "any",
    "spec!": {
        "parentRefs": [{"group": "str", "kind": "str", "namespace": "str",
                        "name!": "str", "sectionName": "str", "port": "port"}],
        "hostnames": ["str"],
        "rules": [{
            "name": "str",
            "matches": [{
                "path": {"type": "enum:Exact|PathPrefix|RegularExpression",
                         "value": "str"},
                "headers": [_HEADER_MATCH],
                "queryParams": [_HEADER_MATCH],
                "method": "enum:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|"
                          "TRACE|PATCH",
            }],
            "filters": ["any"],
            "backendRefs": [{"group": "str", "kind": "str", "name!": "str",
                             "namespace": "str", "port": "port",
                             "weight": "int", "filters": ["any"]}],
            "timeouts": {"request": "duration", "backendRequest": "duration"},
            "retry": "any",
            "sessionPersistence": "any",
        }],
    },
    "status": "any",
}
_PLUGIN_REF = {"pluginRef!": "str"}
EPP_CONFIG = {
    "apiVersion!": "str", "kind!": "str",
    "featureGates": ["str"],
    "plugins!": [{"name": "str", "type!": "str", "parameters": "any"}],
    "schedulingProfiles!": [{"name!": "str",
                             "plugins!": [{"pluginRef!": "str",
                                           "weight": "number"}]}],
    "dataLayer": {"injectDefaults": "bool",
                  "sources": [{"pluginRef!": "str",
                               "extractors!": [_PLUGIN_REF]}],
                  "discovery": "any"},
    "requestHandler": {"parsers": [_PLUGIN_REF]},
    "flowControl": "any",
    "saturationDetector": "any",
}
CRD_SCHEMAS = {
    (POOL_API, "InferencePool"): INFERENCE_POOL,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
}
# Kinds of these names under another API version get this hint.
CRD_HINTS = {
    "InferencePool": "use %s (the GA API; inference.networking.x-k8s.io/"
                     "v1alpha2 is the older experimental one)" % POOL_API,
    "HTTPRoute": "use gateway.networking.k8s.io/v1",
}


def check_schema(data, schema, path, errors):
    """Field names, JSON types, required fields and enums of `data`."""
    if isinstance(schema, dict):
        if not isinstance(data, dict):
            errors.append("%s: expected an object" % path)
            return
        fields = {k.rstrip("!"): v for k, v in schema.items()}
        for key in schema:
            if key.endswith("!") and key[:-1] not in data:
                errors.append("%s.%s: required field missing" % (path, key[:-1]))
        for key, value in data.items():
            if key not in fields:
                errors.append("%s.%s: unknown field" % (path, key))
            else:
                check_schema(value, fields[key], "%s.%s" % (path, key), errors)
        return
    if isinstance(schema, list):
        if not isinstance(data, list) or not data:
            errors.append("%s: expected a non-empty list" % path)
            return
        for i, item in enumerate(data):
            check_schema(item, schema[0], "%s[%d]" % (path, i), errors)
        return
    ok = {
        "any": lambda v: True,
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float))
        and not isinstance(v, bool),
        "port": lambda v: isinstance(v, int) and not isinstance(v, bool)
        and 1 <= v <= 65535,
        "labels": lambda v: isinstance(v, dict) and v and all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
        "duration": lambda v: isinstance(v, str) and re.fullmatch(
            r"([0-9]{1,5}(h|m|s|ms)){1,4}", v) is not None,
    }
    if schema.startswith("enum:"):
        allowed = schema[5:].split("|")
        if data not in allowed:
            errors.append("%s: %r is not one of %s" % (path, data,
                                                        ", ".join(allowed)))
    elif not ok[schema](data):
        errors.append("%s: expected %s, got %r" % (path, schema, data))


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def flags(container):
    """{flag: value} of a container's --flag=value / --flag value args."""
    out = {}
    args = list(container.get("args") or []) + \
        list(container.get("command") or [])[1:]
    i = 0
    while i < len(args):
        a = str(args[i])
        if a.startswith("--"):
            if "=" in a:
                k, v = a[2:].split("=", 1)
            elif i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
                k, v = a[2:], str(args[i + 1])
                i += 1
            else:
                k, v = a[2:], "true"
            out[k] = v
        i += 1
    return out


def epp_container(deployment):
    """The endpoint-picker container of a Deployment, or None."""
    return next((c for c in deployment["spec"]["template"]["spec"]["containers"]
                 if "pool-name" in flags(c) or "endpoint-selector" in flags(c)),
                None)


def is_endpoint_picker(deployment):
    return epp_container(deployment) is not None


def metric_name(spec):
    """The metric a spec such as name{label=value} reads."""
    return re.sub(r"\{.*\}$", "", str(spec or "")).strip()


def _ns(obj):
    return obj["metadata"].get("namespace")


def _named(objs, name):
    return [o for o in objs if o["metadata"].get("name") == name]


def _service_ports(service):
    return {p.get("port"): p for p in service["spec"].get("ports", [])}


def container_port(container, target):
    """The containerPort a Service targetPort (a number or a name) reaches."""
    for p in container.get("ports", []):
        if target in (p.get("name"), p.get("containerPort")):
            return p.get("containerPort")
    return None


def epp_config_rules(config, where, server, gauges, pool, errors):
    """The EndpointPickerConfig: structure, plugin references, and that the
    picker reads spikeserve's gauges on the port that serves them."""
    structure = []
    check_schema(config, EPP_CONFIG, where, structure)
    errors += structure
    if structure:
        return
    if config.get("apiVersion") != EPP_CONFIG_API or \
            config.get("kind") != "EndpointPickerConfig":
        errors.append("%s: expected apiVersion %s, kind EndpointPickerConfig"
                      % (where, EPP_CONFIG_API))
    plugins = {}
    for p in config["plugins"]:
        name = p.get("name") or p["type"]
        if name in plugins:
            errors.append("%s: plugin %s declared twice" % (where, name))
        plugins[name] = p
    refs = [r["pluginRef"] for prof in config["schedulingProfiles"]
            for r in prof["plugins"]]
    for source in (config.get("dataLayer") or {}).get("sources") or []:
        refs.append(source["pluginRef"])
        refs += [e["pluginRef"] for e in source["extractors"]]
    refs += [p["pluginRef"] for p in
             (config.get("requestHandler") or {}).get("parsers") or []]
    for ref in refs:
        if ref not in plugins:
            errors.append("%s: pluginRef %s names no declared plugin"
                          % (where, ref))
    by_type = {}
    for p in plugins.values():
        by_type.setdefault(p["type"], []).append(p)

    pod = server["spec"]["template"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    ann = pod["metadata"].get("annotations", {})
    # Where the picker scrapes: the pool's target port unless the source
    # sets its own; spikeserve serves /metrics on its metrics port.
    for src in by_type.get("metrics-data-source", []) or [{}]:
        params = src.get("parameters") or {}
        target = (pool["spec"].get("targetPorts") or [{}])[0].get("number")
        port = params.get("port", target)
        if port != ports.get("metrics"):
            errors.append(
                "EPP scrapes metrics on port %s; spikeserve serves /metrics "
                "on its metrics port %s (set the metrics-data-source port)"
                % (port, ports.get("metrics")))
        path = params.get("path", "/metrics")
        if path != ann.get("prometheus.io/path", "/metrics"):
            errors.append("EPP scrapes %s; spikeserve serves %s" %
                          (path, ann.get("prometheus.io/path", "/metrics")))
        if params.get("scheme", "http") != "http":
            errors.append("EPP scrapes with %s; spikeserve's metrics port "
                          "speaks http" % params.get("scheme"))

    # Which engine's metric names the picker reads for these pods.
    labels = pod["metadata"].get("labels", {})
    extractors = by_type.get("core-metrics-extractor", []) or [{}]
    for ex in extractors:
        params = ex.get("parameters") or {}
        key = params.get("engineLabelKey")
        engine = labels.get(key) if key else next(
            (labels[k] for k in ENGINE_LABELS if k in labels), None)
        engine = engine or params.get("defaultEngine") or "vllm"
        configs = {e.get("name"): e for e in params.get("engineConfigs") or []}
        if engine not in configs:
            errors.append(
                "EPP reads engine %s's metric names%s; spikeserve exports "
                "none of them (add an engineConfigs entry and make it the "
                "defaultEngine)" % (engine, " (built in)"
                                    if engine in BUILTIN_ENGINES else ""))
            continue
        for field, meant in sorted(EPP_METRICS.items()):
            name = metric_name(configs[engine].get(field))
            if name not in gauges:
                errors.append("EPP %s names %s, which is not a gauge that "
                              "server/serving_metrics.cc defines"
                              % (field, name or "nothing"))
            elif name != meant:
                errors.append("EPP %s reads %s; the spikeserve gauge with "
                              "that meaning is %s" % (field, name, meant))


def _rbac_allows(roles, group, resource, verbs):
    for role in roles:
        for rule in role.get("rules") or []:
            if (group in rule.get("apiGroups", []) or
                    "*" in rule.get("apiGroups", [])) and \
                    (resource in rule.get("resources", []) or
                     "*" in rule.get("resources", [])) and \
                    (set(verbs) <= set(rule.get("verbs", [])) or
                     "*" in rule.get("verbs", [])):
                return True
    return False


def epp_rules(epp, by_kind, server, pool, gauges, errors):
    """One endpoint-picker Deployment: its flags, configuration, access and
    shutdown against the pool it serves."""
    name = epp["metadata"]["name"]
    spec = epp["spec"]["template"]["spec"]
    c = epp_container(epp)
    f = flags(c)
    env = {e["name"]: e for e in c.get("env") or []}
    for flag in REFUSED_EPP_FLAGS:
        if flag in f:
            errors.append("EPP flag --%s is refused by current endpoint "
                          "pickers: set it in the EndpointPickerConfig "
                          "(engineConfigs, metrics-data-source)" % flag)
    if f.get("pool-name") != pool["metadata"]["name"]:
        errors.append("EPP %s serves pool %s, not InferencePool %s" %
                      (name, f.get("pool-name"), pool["metadata"]["name"]))
    ns = f.get("pool-namespace")
    if ns is None:
        ref = (env.get("NAMESPACE", {}).get("valueFrom") or {}) \
            .get("fieldRef", {}).get("fieldPath")
        if ref != "metadata.namespace" and \
                env.get("NAMESPACE", {}).get("value") != _ns(pool):
            errors.append("EPP %s: neither --pool-namespace nor NAMESPACE "
                          "(from metadata.namespace) names the pool's "
                          "namespace" % name)
    elif ns != _ns(pool):
        errors.append("EPP %s: --pool-namespace %s, the pool is in %s" %
                      (name, ns, _ns(pool)))
    if f.get("pool-group", POOL_GROUP) != POOL_GROUP:
        errors.append("EPP %s: --pool-group must be %s" % (name, POOL_GROUP))

    # The configuration file: mounted from a ConfigMap of this render.
    path = f.get("config-file")
    if not path:
        errors.append("EPP %s: --config-file is required (the spikeserve "
                      "metric names are set there)" % name)
    else:
        mount = next((m for m in c.get("volumeMounts") or []
                      if m["mountPath"].rstrip("/") == os.path.dirname(path)),
                     None)
        volume = mount and next((v for v in spec.get("volumes") or []
                                 if v["name"] == mount["name"]), None)
        cm_name = volume and (volume.get("configMap") or {}).get("name")
        cm = next((m for m in _named(by_kind.get("ConfigMap", []), cm_name)),
                  None) if cm_name else None
        text = cm and (cm.get("data") or {}).get(os.path.basename(path))
        if text is None:
            errors.append("EPP %s: --config-file %s is not a key of a "
                          "ConfigMap mounted at %s" %
                          (name, path, os.path.dirname(path)))
        else:
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError as e:
                errors.append("EPP %s: %s: %s" % (name, path, e))
            else:
                epp_config_rules(config, "ConfigMap/%s[%s]" %
                                 (cm_name, os.path.basename(path)),
                                 server, gauges, pool, errors)

    # Reads pods and the pool in its namespace.
    sa = spec.get("serviceAccountName", "default")
    if not _named(by_kind.get("ServiceAccount", []), sa):
        errors.append("EPP %s: ServiceAccount %s is not in the render" %
                      (name, sa))
    roles = []
    for b in by_kind.get("RoleBinding", []):
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and
               s.get("namespace", _ns(b)) == _ns(epp)
               for s in b.get("subjects") or []):
            ref = b["roleRef"]
            if ref.get("kind") == "Role":
                roles += _named(by_kind.get("Role", []), ref.get("name"))
    for group, resource in (("", "pods"), (POOL_GROUP, "inferencepools")):
        if not _rbac_allows(roles, group, resource, ("get", "list", "watch")):
            errors.append("EPP %s: ServiceAccount %s may not get/list/watch "
                          "%s (a Role bound by a RoleBinding)" %
                          (name, sa, resource))

    sc = spec.get("securityContext", {})
    csc = c.get("securityContext", {})
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 0) == 0:
        errors.append("EPP %s must run as non-root (runAsNonRoot, runAsUser "
                      "!= 0)" % name)
    if csc.get("allowPrivilegeEscalation") is not False:
        errors.append("EPP %s must not allow privilege escalation" % name)
    res = c.get("resources", {})
    if "memory" not in res.get("requests", {}) or \
            "memory" not in res.get("limits", {}):
        errors.append("EPP %s: memory requests and limits must be set" % name)
    for probe in ("readinessProbe", "livenessProbe"):
        if not c.get(probe):
            errors.append("EPP %s needs a %s" % (name, probe))
    # It keeps answering while the pool's pods drain.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pool_grace = server["spec"]["template"]["spec"].get(
        "terminationGracePeriodSeconds", 30)
    if grace < pool_grace:
        errors.append("EPP %s: terminationGracePeriodSeconds (%d) shorter "
                      "than the pool's pods' (%d)" % (name, grace, pool_grace))


def pool_rules(by_kind, server, gauges, errors):
    """InferencePools, their endpoint pickers and HTTPRoutes."""
    pools = by_kind.get("InferencePool", [])
    epps = [d for d in by_kind.get("Deployment", []) if is_endpoint_picker(d)]
    pod = server["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if epps and not pools:
        errors.append("an endpoint picker without an InferencePool")
    for pool in pools:
        pname = pool["metadata"]["name"]
        spec = pool["spec"]
        if _ns(pool) != _ns(server):
            errors.append("InferencePool %s is not in the Deployment's "
                          "namespace" % pname)
        selector = spec["selector"]["matchLabels"]
        if not matches(selector, labels):
            errors.append("InferencePool %s selects no spikeserve pod "
                          "(matchLabels %s)" % (pname, selector))
        for epp in epps:
            if matches(selector, epp["spec"]["template"]["metadata"]
                       .get("labels", {})):
                errors.append("InferencePool %s also selects the endpoint "
                              "picker's pods" % pname)
        targets = [p["number"] for p in spec["targetPorts"]]
        if targets != [ports.get("http")]:
            errors.append("InferencePool %s targetPorts %s must be the "
                          "Deployment's http containerPort (%s)" %
                          (pname, targets, ports.get("http")))
        if spec.get("appProtocol", "http") != "http":
            errors.append("InferencePool %s: spikeserve's OpenAI port speaks "
                          "HTTP/1.1 (appProtocol http)" % pname)
        # The picker: a Service of this render in front of an EPP
        # Deployment's ext_proc port.
        ref = spec.get("endpointPickerRef")
        if not ref:
            errors.append("InferencePool %s has no endpointPickerRef" % pname)
            continue
        if ref.get("kind", "Service") != "Service" or ref.get("group", ""):
            errors.append("InferencePool %s: endpointPickerRef must be a "
                          "core Service" % pname)
            continue
        svc = next(iter(_named(by_kind.get("Service", []), ref["name"])), None)
        port = (ref.get("port") or {}).get("number")
        if port is None:
            errors.append("InferencePool %s: endpointPickerRef needs a port "
                          "(the picker's ext_proc port)" % pname)
            continue
        if svc is None:
            errors.append("InferencePool %s: endpointPickerRef Service %s is "
                          "not in the render" % (pname, ref["name"]))
            continue
        sport = _service_ports(svc).get(port)
        if sport is None:
            errors.append("InferencePool %s: Service %s has no port %s" %
                          (pname, ref["name"], port))
            continue
        served = [e for e in epps if matches(
            svc["spec"].get("selector"),
            e["spec"]["template"]["metadata"].get("labels", {}))]
        if not served:
            errors.append("InferencePool %s: Service %s selects no endpoint "
                          "picker" % (pname, ref["name"]))
            continue
        for epp in served:
            ec = epp_container(epp)
            grpc = int(flags(ec).get("grpc-port", EPP_DEFAULT_GRPC_PORT))
            target = sport.get("targetPort", sport.get("port"))
            if container_port(ec, target) != grpc:
                errors.append("InferencePool %s: Service %s port %s does not "
                              "reach the picker's ext_proc port %d" %
                              (pname, ref["name"], port, grpc))
            epp_rules(epp, by_kind, server, pool, gauges, errors)
    pool_names = {p["metadata"]["name"] for p in pools}
    for route in by_kind.get("HTTPRoute", []):
        rname = route["metadata"]["name"]
        spec = route["spec"]
        if not spec.get("parentRefs"):
            errors.append("HTTPRoute %s attaches to no Gateway" % rname)
        for ref in spec.get("parentRefs") or []:
            if ref.get("kind", "Gateway") != "Gateway" or \
                    ref.get("group", "gateway.networking.k8s.io") != \
                    "gateway.networking.k8s.io":
                errors.append("HTTPRoute %s: parentRef %s is not a Gateway" %
                              (rname, ref.get("name")))
        backends = [b for r in spec.get("rules") or []
                    for b in r.get("backendRefs") or []]
        if not backends:
            errors.append("HTTPRoute %s has no backendRefs" % rname)
        for b in backends:
            if b.get("kind", "Service") == "InferencePool":
                if b.get("group") != POOL_GROUP:
                    errors.append("HTTPRoute %s: InferencePool backendRef "
                                  "needs group %s" % (rname, POOL_GROUP))
                if b["name"] not in pool_names:
                    errors.append("HTTPRoute %s: backendRef InferencePool %s "
                                  "is not in the render" % (rname, b["name"]))
                if b.get("port") is not None:
                    errors.append("HTTPRoute %s: an InferencePool backendRef "
                                  "takes no port (the pool's targetPorts)" %
                                  rname)
            elif not _named(by_kind.get("Service", []), b["name"]):
                errors.append("HTTPRoute %s: backendRef %s %s is not in the "
                              "render" % (rname, b.get("kind", "Service"),
                                          b["name"]))
