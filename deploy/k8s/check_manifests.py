#!/usr/bin/python3
"""Structural check of the rendered Kubernetes manifests, offline (no API
server): every object against Debian's python3-kubernetes model classes
(field names, types, required fields), plus the project's rules. Fields newer
than the packaged client (gRPC probes; autoscaling/v2, checked with the
identical v2beta2 schema) are checked by hand.

The HPA's metric must be a gauge that server/serving_metrics.cc defines and
that a prometheus-adapter rule (deploy/prometheus/adapter-rules.yaml unless
--adapter-rules names another file) serves as a Pods metric.

Where the render holds an InferencePool (overlays/inference-pool), the kinds
the client does not model (InferencePool, HTTPRoute, the endpoint picker's
EndpointPickerConfig) are checked against their required fields and enums,
and pool_rules.py ties them to the Deployment: the pool selects its pods on
its http port, the picker reads the gauges server/serving_metrics.cc
defines on the port that serves /metrics, may read pods and pools, and the
route's backend is the pool.

  /usr/bin/python3 deploy/k8s/check_manifests.py [--adapter-rules FILE] DIR

Exit 0 when everything holds; otherwise 1 and one line per violation.
"""
import argparse
import os
import re
import subprocess
import sys

import yaml
from kubernetes import client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pool_rules  # noqa: E402

MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"):
        "V2beta2HorizontalPodAutoscaler",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}
# The pod label that marks the spikeserve server's pods.
SERVER_COMPONENT = ("app.kubernetes.io/component", "server")
GRPC_SERVICE = "spikeserve.v1.Generation"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVING_METRICS = os.path.join(ROOT, "server", "serving_metrics.cc")
ADAPTER_RULES = os.path.join(ROOT, "deploy", "prometheus", "adapter-rules.yaml")


def check_fields(data, type_name, path, errors):
    """Recursively: known field names and JSON types of `type_name`."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            errors.append("%s: expected a list" % path)
            return
        for i, item in enumerate(data):
            check_fields(item, type_name[5:-1], "%s[%d]" % (path, i), errors)
        return
    if type_name.startswith("dict("):
        if not isinstance(data, dict):
            errors.append("%s: expected a map" % path)
        return
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float),
                 "object": object, "datetime": str, "date": str}
    if type_name in primitive:
        ok = isinstance(data, primitive[type_name])
        if type_name == "object":  # IntOrString and friends
            ok = isinstance(data, (int, str))
        if type_name == "int" and isinstance(data, bool):
            ok = False
        if not ok:
            errors.append("%s: expected %s, got %r" % (path, type_name, data))
        return
    cls = getattr(client, type_name)
    if not isinstance(data, dict):
        errors.append("%s: expected an object (%s)" % (path, type_name))
        return
    by_json = {v: k for k, v in cls.attribute_map.items()}
    for key, value in data.items():
        sub = "%s.%s" % (path, key)
        if type_name == "V1Probe" and key == "grpc":  # k8s >= 1.24
            if not (isinstance(value, dict) and set(value) <= {"port", "service"}
                    and isinstance(value.get("port"), int)):
                errors.append("%s: grpc probe needs an int port (and an "
                              "optional service)" % sub)
            continue
        if key not in by_json:
            errors.append("%s: unknown field for %s" % (sub, type_name))
            continue
        check_fields(value, cls.openapi_types[by_json[key]], sub, errors)


def required_fields(data, type_name, path, errors):
    """The client's own validation (required fields, enums)."""
    try:
        client.ApiClient()._ApiClient__deserialize(data, type_name)
    except (ValueError, TypeError) as e:
        errors.append("%s: %s" % (path, e))


def seconds(text):
    m = re.fullmatch(r"(\d+)s", str(text))
    return int(m.group(1)) if m else None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def exported_metrics(path=SERVING_METRICS):
    """{name: type} of the families the server registers: collector families
    (Family("name", help, MetricType::Gauge, ...)) and built ones
    (prometheus::BuildGauge().Name("name"))."""
    with open(path) as f:
        src = f.read()
    found = {}
    for name, kind in re.findall(
            r'Family\(\s*"(\w+)".*?MetricType::(\w+)', src, re.S):
        found[name] = kind.lower()
    for kind, name in re.findall(
            r'Build(Counter|Gauge|Histogram|Summary)\(\)\s*\.Name\("(\w+)"\)',
            src):
        found[name] = kind.lower()
    return found


def series_name(query):
    """The metric name a PromQL series selector reads, or None."""
    m = re.match(r"\s*([A-Za-z_:][\w:]*)\s*(\{|$)", query) or \
        re.search(r'__name__\s*=\s*"([^"]+)"', query)
    return m.group(1) if m else None


def adapter_exposed(path, gauges, errors):
    """Names the adapter's custom-metrics rules serve per pod, after checking
    each rule: a series the server exports, namespace and pod associations,
    a query with the adapter's placeholders."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        errors.append("prometheus-adapter rules: %s" % e)
        return set()
    exposed = set()
    where = os.path.basename(path)
    for i, rule in enumerate(config.get("rules") or []):
        at = "%s rules[%d]" % (where, i)
        series = series_name(str(rule.get("seriesQuery", "")))
        if series is None:
            errors.append("%s: seriesQuery names no metric" % at)
            continue
        if series not in gauges:
            errors.append("%s reads %s, which is not a gauge that "
                          "server/serving_metrics.cc defines" % (at, series))
        overrides = (rule.get("resources") or {}).get("overrides") or {}
        resources = {k: (v or {}).get("resource") for k, v in overrides.items()}
        if resources.get("namespace") != "namespace" or \
                resources.get("pod") not in ("pod", "pods"):
            errors.append("%s must associate the namespace and pod labels "
                          "with their resources (a Pods metric)" % at)
            continue
        query = str(rule.get("metricsQuery", ""))
        for part in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            if part not in query:
                errors.append("%s: metricsQuery lacks %s" % (at, part))
        naming = rule.get("name") or {}
        name = series
        if naming.get("matches"):
            try:
                # The adapter's default for an empty `as`: the first group,
                # else the whole match; $N in `as` is group N.
                pattern = re.compile(naming["matches"])
                if not pattern.search(series):
                    errors.append("%s: name.matches does not match %s"
                                  % (at, series))
                    continue
                as_ = naming.get("as") or ("$1" if pattern.groups else "$0")
                name = pattern.sub(
                    re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", as_), series)
            except re.error as e:
                errors.append("%s: name.matches: %s" % (at, e))
                continue
        exposed.add(name)
    return exposed


def hpa_rules(hpas, adapter_rules, gauges, errors):
    """Scale on queue depth: a Pods metric on a gauge the server exports and
    the adapter serves; never on CPU (OpenMP threads spin while they wait, so
    a busy replica reads ~100% whether it keeps up or not)."""
    if not hpas:
        return
    exposed = adapter_exposed(adapter_rules, gauges, errors)
    for h in hpas:
        metrics = h["spec"].get("metrics") or []
        pods = [m for m in metrics if m.get("type") == "Pods"]
        for m in metrics:
            if m.get("type") == "Resource":
                errors.append("HPA scales on %s: OpenMP spinning keeps a busy "
                              "replica near 100%% CPU; scale on queue depth "
                              "(a Pods metric)" % m["resource"].get("name"))
        if not pods:
            errors.append("HPA needs a Pods metric on the waiting-requests "
                          "gauge")
        for m in pods:
            name = m["pods"]["metric"].get("name")
            target = m["pods"].get("target") or {}
            if name not in gauges:
                errors.append("HPA metric %s is not a gauge that "
                              "server/serving_metrics.cc defines" % name)
            if name not in exposed:
                errors.append("HPA metric %s is not served by a "
                              "prometheus-adapter rule in %s"
                              % (name, os.path.basename(adapter_rules)))
            if target.get("type") != "AverageValue" or \
                    "averageValue" not in target:
                errors.append("HPA metric %s needs an AverageValue target "
                              "(per-replica queue depth)" % name)


def project_rules(objs, errors, adapter_rules=ADAPTER_RULES):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    deps = by_kind.get("Deployment", [])
    key, value = SERVER_COMPONENT
    servers = [d for d in deps if d["spec"]["template"]["metadata"]
               .get("labels", {}).get(key) == value]
    for d in deps:
        if d not in servers and not pool_rules.is_endpoint_picker(d):
            errors.append("Deployment %s is neither the spikeserve server "
                          "(pod label %s: %s) nor an endpoint picker" %
                          (d["metadata"]["name"], key, value))
        if not matches(d["spec"]["selector"].get("matchLabels"),
                       d["spec"]["template"]["metadata"].get("labels", {})):
            errors.append("Deployment %s: selector does not match its pod "
                          "labels" % d["metadata"]["name"])
    if len(servers) != 1:
        errors.append("expected one spikeserve Deployment (pod label %s: %s), "
                      "found %d" % (key, value, len(servers)))
        return
    d = servers[0]
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    # Every Service reaches pods of a Deployment here, on ports they have.
    for s in by_kind.get("Service", []):
        selected = [x for x in deps if matches(
            s["spec"].get("selector"),
            x["spec"]["template"]["metadata"].get("labels", {}))]
        if not selected:
            errors.append("Service %s selects no spikeserve pod" %
                          s["metadata"]["name"])
        for x in selected:
            containers = x["spec"]["template"]["spec"]["containers"]
            for p in s["spec"].get("ports", []):
                target = p.get("targetPort", p.get("port"))
                if not any(pool_rules.container_port(c, target)
                           for c in containers):
                    errors.append("Service %s port %s: no container port %s "
                                  "in Deployment %s" %
                                  (s["metadata"]["name"], p.get("name"),
                                   target, x["metadata"]["name"]))
    if not any(s["spec"].get("clusterIP") == "None" and
               matches(s["spec"].get("selector"), labels)
               for s in by_kind.get("Service", [])):
        errors.append("no headless Service for client-side load balancing")
    for p in by_kind.get("PodDisruptionBudget", []):
        if not matches(p["spec"]["selector"].get("matchLabels"), labels):
            errors.append("PodDisruptionBudget selects no spikeserve pod")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if ref.get("kind") != "Deployment" or ref.get("name") != name:
            errors.append("HPA does not target Deployment %s" % name)
        elif "replicas" in d["spec"]:
            # Re-applying the manifests would reset what the HPA scaled to
            # (or conflict with it under server-side apply).
            errors.append("Deployment %s sets spec.replicas, which its HPA "
                          "owns (set the HPA's minReplicas instead)" % name)
    gauges = {n for n, k in exported_metrics().items() if k == "gauge"}
    hpa_rules(by_kind.get("HorizontalPodAutoscaler", []), adapter_rules,
              gauges, errors)
    for m in by_kind.get("ServiceMonitor", []):
        sel = m["spec"]["selector"].get("matchLabels")
        if not any(matches(sel, s["metadata"].get("labels", {}))
                   for s in by_kind.get("Service", [])):
            errors.append("ServiceMonitor selects no Service")
    server_rules(d, errors)
    try:
        pool_rules.pool_rules(by_kind, d, gauges, errors)
    except (KeyError, TypeError, AttributeError, StopIteration):
        if not errors:
            raise
        # A required field is missing (reported above).
        errors.append("inference-pool rules not checked: fix the fields "
                      "above")


def server_rules(d, errors):
    """The spikeserve Deployment's pod: security, ports, probes, cores,
    shutdown, scrape annotations."""
    pod = d["spec"]["template"]
    spec = pod["spec"]
    sc = spec.get("securityContext", {})
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 0) == 0:
        errors.append("pod must run as non-root (runAsNonRoot, runAsUser != 0)")
    c = spec["containers"][0]
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        errors.append("container root filesystem must be read-only")
    if csc.get("allowPrivilegeEscalation") is not False:
        errors.append("container must not allow privilege escalation")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for port in ("grpc", "metrics", "http"):
        if port not in ports:
            errors.append("container port %s is required" % port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        pr = c.get(probe)
        if not pr or "grpc" not in pr:
            errors.append("%s must be a gRPC health probe" % probe)
            continue
        if pr["grpc"].get("port") != ports.get("grpc"):
            errors.append("%s does not probe the grpc port" % probe)
        if probe != "livenessProbe" and \
                pr["grpc"].get("service") != GRPC_SERVICE:
            errors.append("%s must check service %s" % (probe, GRPC_SERVICE))
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                errors.append("resources.%s.%s is not set" % (kind, r))
    if res.get("requests", {}).get("cpu") != res.get("limits", {}).get("cpu"):
        errors.append("CPU requests must equal limits (guaranteed cores)")
    env = {e["name"]: e for e in c.get("env", [])}
    omp = env.get("OMP_NUM_THREADS", {}).get("valueFrom", {}) \
        .get("resourceFieldRef", {})
    if omp.get("resource") != "limits.cpu":
        errors.append("OMP_NUM_THREADS must come from limits.cpu (downward API)")
    drain = seconds(env.get("SPIKESERVE_DRAIN_TIMEOUT", {}).get("value"))
    if drain is None:
        errors.append("SPIKESERVE_DRAIN_TIMEOUT must be set (e.g. 30s)")
        drain = 30
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = 0
    cmd = pre.get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0].endswith("sleep") and cmd[1].isdigit():
        pre_s = int(cmd[1])
    if not pre:
        errors.append("a preStop hook is required")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pre_s:
        errors.append("terminationGracePeriodSeconds (%d) must exceed preStop "
                      "(%d s) + drain timeout (%d s)" % (grace, pre_s, drain))
    ann = pod["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or \
            ann.get("prometheus.io/port") != str(ports.get("metrics")):
        errors.append("pod needs prometheus.io/scrape and port annotations "
                      "matching the metrics port")


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0])
    parser.add_argument("dir", help="a kustomization directory")
    parser.add_argument("--adapter-rules", default=ADAPTER_RULES,
                        help="prometheus-adapter configuration (rules:)")
    args = parser.parse_args(argv[1:])
    rendered = subprocess.run(["kubectl", "kustomize", args.dir],
                              capture_output=True, text=True)
    if rendered.returncode != 0:
        print("kustomize: " + rendered.stderr.strip())
        return 1
    objs = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    errors = []
    for o in objs:
        where = "%s/%s" % (o.get("kind"), o.get("metadata", {}).get("name"))
        key = (o.get("apiVersion"), o.get("kind"))
        model = MODELS.get(key)
        if model is None:
            if key in pool_rules.CRD_SCHEMAS:
                pool_rules.check_schema(o, pool_rules.CRD_SCHEMAS[key],
                                        where, errors)
                check_fields(o["metadata"], "V1ObjectMeta", where + ".metadata",
                             errors)
            elif o.get("kind") in pool_rules.CRD_HINTS:
                errors.append("%s: unexpected apiVersion %s: %s" %
                              (where, o.get("apiVersion"),
                               pool_rules.CRD_HINTS[o["kind"]]))
            elif o.get("kind") != "ServiceMonitor":
                errors.append("%s: unexpected kind %s" % (where, o.get("apiVersion")))
            continue
        check_fields(o, model, where, errors)
        required_fields(o, model, where, errors)
    try:
        project_rules(objs, errors, args.adapter_rules)
    except (KeyError, TypeError, AttributeError, StopIteration):
        if not errors:
            raise
        # A required field is missing (reported above): the rules that
        # need it cannot run.
        errors.append("project rules not checked: fix the fields above")
    for e in errors:
        print(e)
    print("%d objects, %d violations" % (len(objs), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
