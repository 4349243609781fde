#!/usr/bin/python3
"""Deployment files: yamllint passes on deploy/, the example and
inference-pool overlays render (kubectl kustomize) and pass
deploy/k8s/check_manifests.py, broken copies (manifests, the endpoint
picker's configuration, the prometheus-adapter rules) fail it with the
expected message, the adapter's query is PromQL, the image (Dockerfile) and
the manifests agree (ports, environment, probe service, model path), and the
plan ConfigMap holds the committed plan.

  /usr/bin/python3 tests/deploy/manifests_test.py
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
CHECK = os.path.join(K8S, "check_manifests.py")
ADAPTER_RULES = os.path.join(ROOT, "deploy", "prometheus", "adapter-rules.yaml")


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def render(k8s_dir, overlay="example"):
    p = run(["kubectl", "kustomize", os.path.join(k8s_dir, "overlays", overlay)])
    assert p.returncode == 0, p.stderr
    return [o for o in yaml.safe_load_all(p.stdout) if o]


def dockerfile():
    """EXPOSE ports, ENV values and the HEALTHCHECK line of the runtime stage."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    runtime = text[text.rindex("\nFROM "):]
    env = {}
    for line in re.findall(r"^ENV (.*)$", runtime, re.M):
        for k, v in re.findall(r"(\w+)=(\S+)", line):
            env[k] = v
    expose = {int(p) for line in re.findall(r"^EXPOSE (.*)$", runtime, re.M)
              for p in line.split()}
    health = re.search(r"^HEALTHCHECK (.*)$", runtime, re.M).group(1)
    return expose, env, health


class ManifestsTest(unittest.TestCase):
    def test_yamllint(self):
        p = run(["yamllint", "-c", os.path.join(ROOT, "deploy", ".yamllint"),
                 os.path.join(ROOT, "deploy")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_overlays_render_and_pass_the_check(self):
        base = ["ConfigMap", "Service", "Service", "Deployment",
                "PodDisruptionBudget", "HorizontalPodAutoscaler",
                "ServiceMonitor"]
        overlays = {
            "example": ["Namespace"],
            # The endpoint picker (Deployment, Service, its configuration,
            # access), the pool and the route.
            "inference-pool": ["Namespace", "Deployment", "Service",
                               "ConfigMap", "ServiceAccount", "Role",
                               "RoleBinding", "InferencePool", "HTTPRoute"],
        }
        for overlay, extra in overlays.items():
            kinds = sorted(o["kind"] for o in render(K8S, overlay))
            self.assertEqual(kinds, sorted(base + extra), overlay)
            p = run(["/usr/bin/python3", CHECK,
                     os.path.join(K8S, "overlays", overlay)])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("0 violations", p.stdout)

    def test_inference_pool_fits_the_deployment(self):
        # The pool sends the OpenAI port to the serving pods; the picker
        # scrapes the metrics port and reads spikeserve's gauges.
        objs = render(K8S, "inference-pool")
        pool = next(o for o in objs if o["kind"] == "InferencePool")
        self.assertEqual(pool["apiVersion"], "inference.networking.k8s.io/v1")
        server = next(o for o in objs if o["kind"] == "Deployment" and
                      o["metadata"]["name"] == "spikeserve")
        c = server["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(pool["spec"]["targetPorts"], [{"number": ports["http"]}])
        epp = next(o for o in objs if o["kind"] == "ConfigMap" and
                   "epp-config.yaml" in o.get("data", {}))
        config = yaml.safe_load(epp["data"]["epp-config.yaml"])
        plugins = {p["type"]: p.get("parameters") for p in config["plugins"]}
        self.assertEqual(plugins["metrics-data-source"]["port"], ports["metrics"])
        engine = plugins["core-metrics-extractor"]["engineConfigs"][0]
        self.assertEqual(
            {k: v for k, v in engine.items() if k.endswith("Spec")},
            {"queuedRequestsSpec": "spikeserve_requests_waiting",
             "runningRequestsSpec": "spikeserve_requests_running",
             "kvUsageSpec": "spikeserve_kv_cache_usage_ratio"})
        with open(os.path.join(ROOT, "server", "serving_metrics.cc")) as f:
            source = f.read()
        for name in engine.values():
            if name.startswith("spikeserve_"):
                self.assertRegex(source, r'Family\("%s",[^;]*MetricType::Gauge'
                                 % name)

    def check_broken_copy(self, relpath, old, new, message, target):
        """Copy deploy/k8s, replace `old` by `new` (first occurrence) in
        `relpath`, and expect the check of `target` to fail with `message`."""
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "k8s")
            shutil.copytree(K8S, copy)
            path = os.path.join(copy, relpath)
            with open(path) as f:
                text = f.read()
            self.assertIn(old, text, (relpath, old))
            with open(path, "w") as f:
                f.write(text.replace(old, new, 1))
            p = run(["/usr/bin/python3", CHECK, os.path.join(copy, target)])
            self.assertEqual(p.returncode, 1, (relpath, new, p.stdout))
            self.assertIn(message, p.stdout, (relpath, new))

    def test_broken_copies_fail(self):
        # (file under deploy/k8s, text to replace, replacement, expected
        # message, directory checked); the example overlay unless named.
        example = "overlays/example"
        cases = [
            ("base/deployment.yaml", "readinessProbe:", "readinessProbeX:",
             "unknown field"),
            ("base/deployment.yaml",
             "          readinessProbe:\n            grpc:",
             "          readinessProbe:\n            tcpSocket:",
             "readinessProbe must be a gRPC health probe"),
            ("base/deployment.yaml", "runAsUser: 10001", "runAsUser: 0",
             "non-root"),
            ("base/deployment.yaml", "terminationGracePeriodSeconds: 45",
             "terminationGracePeriodSeconds: 20",
             "terminationGracePeriodSeconds (20) must exceed"),
            ("base/deployment.yaml", "readOnlyRootFilesystem: true",
             "readOnlyRootFilesystem: false", "read-only"),
            # The example overlay sets resources itself: check the base.
            ("base/deployment.yaml",
             "              cpu: \"2\"\n              memory: 1536Mi\n          startupProbe",
             "              memory: 1536Mi\n          startupProbe",
             "must equal limits", "base"),
            ("base/deployment.yaml", "containerPort: 50051",
             "containerPort: \"50051\"", "expected int"),
            ("base/deployment.yaml", "- name: http\n              containerPort",
             "- name: web\n              containerPort",
             "container port http is required"),
            ("base/service.yaml", "app.kubernetes.io/component: server",
             "app.kubernetes.io/component: sever", "selects no spikeserve pod"),
            ("base/service.yaml", "targetPort: http", "targetPort: web",
             "Service spikeserve port http: no container port web"),
            ("base/pdb.yaml", "app.kubernetes.io/component: server",
             "app.kubernetes.io/component: db", "PodDisruptionBudget selects"),
            ("base/hpa.yaml", "    name: spikeserve\n  minReplicas",
             "    name: other\n  minReplicas", "HPA does not target"),
            ("base/deployment.yaml", "spec:\n  # No replicas",
             "spec:\n  replicas: 2\n  # No replicas",
             "sets spec.replicas, which its HPA owns"),
            # Queue depth, not CPU; a gauge the server exports and the
            # adapter serves.
            ("base/hpa.yaml", "name: spikeserve_requests_waiting",
             "name: spikeserve_requests_queued",
             "HPA metric spikeserve_requests_queued is not a gauge that "
             "server/serving_metrics.cc defines"),
            ("base/hpa.yaml", "name: spikeserve_requests_waiting",
             "name: spikeserve_requests_running",
             "HPA metric spikeserve_requests_running is not served by a "
             "prometheus-adapter rule"),
            ("base/hpa.yaml", "name: spikeserve_requests_waiting",
             "name: spikeserve_requests_total",
             "not a gauge that server/serving_metrics.cc defines"),
            ("base/hpa.yaml",
             "    - type: Pods\n      pods:\n        metric:\n"
             "          name: spikeserve_requests_waiting\n"
             "        target:\n          type: AverageValue\n"
             "          averageValue: \"2\"\n",
             "    - type: Resource\n      resource:\n        name: cpu\n"
             "        target:\n          type: Utilization\n"
             "          averageUtilization: 70\n",
             "HPA scales on cpu: OpenMP spinning"),
            ("base/hpa.yaml", "type: AverageValue", "type: Value",
             "needs an AverageValue target"),
        ]
        for case in cases:
            relpath, old, new, message = case[:4]
            target = case[4] if len(case) > 4 else example
            self.check_broken_copy(relpath, old, new, message, target)

    def test_broken_inference_pool_copies_fail(self):
        # (file under deploy/k8s, text to replace, replacement, expected
        # message); each checked on the inference-pool overlay.
        pool = "overlays/inference-pool/inferencepool.yaml"
        epp = "overlays/inference-pool/epp.yaml"
        config = "overlays/inference-pool/epp-config.yaml"
        rbac = "overlays/inference-pool/epp-rbac.yaml"
        route = "overlays/inference-pool/httproute.yaml"
        cases = [
            # The pool: its API version, required fields, enums; the pods
            # and the port it sends requests to.
            (pool, "apiVersion: inference.networking.k8s.io/v1",
             "apiVersion: inference.networking.x-k8s.io/v1alpha2",
             "unexpected apiVersion inference.networking.x-k8s.io/v1alpha2"),
            (pool, "  targetPorts:\n    - number: 8080\n", "",
             "spec.targetPorts: required field missing"),
            (pool, "failureMode: FailOpen", "failureMode: FailSoft",
             "'FailSoft' is not one of FailOpen, FailClose"),
            (pool, "- number: 8080", "- number: 8000",
             "InferencePool spikeserve targetPorts [8000] must be the "
             "Deployment's http containerPort (8080)"),
            ("base/deployment.yaml", "containerPort: 8080",
             "containerPort: 8081",
             "targetPorts [8080] must be the Deployment's http "
             "containerPort (8081)"),
            (pool, "      app.kubernetes.io/component: server",
             "      app.kubernetes.io/component: model",
             "InferencePool spikeserve selects no spikeserve pod"),
            (pool, "    name: spikeserve-epp", "    name: spikeserve-picker",
             "endpointPickerRef Service spikeserve-picker is not in the "
             "render"),
            (pool, "      number: 9002", "      number: 9003",
             "Service spikeserve-epp has no port 9003"),
            (epp, "targetPort: grpc", "targetPort: metrics",
             "does not reach the picker's ext_proc port 9002"),
            # The picker's metric names: gauges the server defines, each
            # with its meaning, read on the port that serves /metrics.
            (config, "queuedRequestsSpec: spikeserve_requests_waiting",
             "queuedRequestsSpec: spikeserve_requests_queued",
             "EPP queuedRequestsSpec names spikeserve_requests_queued, which "
             "is not a gauge that server/serving_metrics.cc defines"),
            (config, "queuedRequestsSpec: spikeserve_requests_waiting",
             "queuedRequestsSpec: spikeserve_requests_running",
             "EPP queuedRequestsSpec reads spikeserve_requests_running; the "
             "spikeserve gauge with that meaning is "
             "spikeserve_requests_waiting"),
            (config, "kvUsageSpec: spikeserve_kv_cache_usage_ratio",
             "kvUsageSpec: spikeserve_prefix_cache_hits_total",
             "EPP kvUsageSpec names spikeserve_prefix_cache_hits_total, "
             "which is not a gauge"),
            (config, "defaultEngine: spikeserve", "defaultEngine: vllm",
             "EPP reads engine vllm's metric names (built in)"),
            (config, "      port: 9464\n", "",
             "EPP scrapes metrics on port 8080; spikeserve serves /metrics "
             "on its metrics port 9464"),
            (config, "      - pluginRef: queue-scorer",
             "      - pluginRef: queue-scorr",
             "pluginRef queue-scorr names no declared plugin"),
            (config, "apiVersion: llm-d.ai/v1alpha1",
             "apiVersion: inference.networking.x-k8s.io/v1alpha1",
             "expected apiVersion llm-d.ai/v1alpha1"),
            (config, "schedulingProfiles:", "profiles:",
             "schedulingProfiles: required field missing"),
            # The picker's flags, access and shutdown.
            (epp, "            - --tracing=false\n",
             "            - --tracing=false\n"
             "            - --total-queued-requests-metric="
             "spikeserve_requests_waiting\n",
             "EPP flag --total-queued-requests-metric is refused"),
            (epp, "--pool-name=spikeserve", "--pool-name=vllm",
             "EPP spikeserve-epp serves pool vllm, not InferencePool "
             "spikeserve"),
            (epp, "--config-file=/config/epp-config.yaml",
             "--config-file=/config/plugins.yaml",
             "--config-file /config/plugins.yaml is not a key of a "
             "ConfigMap mounted at /config"),
            (epp, "            - name: NAMESPACE\n              valueFrom:\n"
                  "                fieldRef:\n"
                  "                  fieldPath: metadata.namespace\n", "",
             "neither --pool-namespace nor NAMESPACE"),
            (epp, "terminationGracePeriodSeconds: 60",
             "terminationGracePeriodSeconds: 30",
             "terminationGracePeriodSeconds (30) shorter than the pool's "
             "pods' (45)"),
            (epp, "runAsUser: 65532", "runAsUser: 0",
             "EPP spikeserve-epp must run as non-root"),
            (rbac, 'resources: ["pods"]', 'resources: ["services"]',
             "ServiceAccount spikeserve-epp may not get/list/watch pods"),
            (rbac, "    name: spikeserve-epp\nroleRef",
             "    name: default\nroleRef",
             "may not get/list/watch inferencepools"),
            # The route: to the pool, through a Gateway.
            (route, "          name: spikeserve", "          name: spikeserv",
             "backendRef InferencePool spikeserv is not in the render"),
            (route, "        - group: inference.networking.k8s.io\n"
                    "          kind: InferencePool",
             "        - kind: InferencePool",
             "InferencePool backendRef needs group"),
            (route, "type: PathPrefix", "type: Prefix",
             "'Prefix' is not one of Exact, PathPrefix, RegularExpression"),
            (route, "request: 300s", "request: 5min", "expected duration"),
            (route, "      kind: Gateway", "      kind: Service",
             "parentRef inference-gateway is not a Gateway"),
        ]
        for relpath, old, new, message in cases:
            self.check_broken_copy(relpath, old, new, message,
                                   "overlays/inference-pool")

    def test_broken_adapter_rules_fail(self):
        with open(ADAPTER_RULES) as f:
            text = f.read()
        cases = [
            ('as: "spikeserve_requests_waiting"', 'as: "spikeserve_queue"',
             "HPA metric spikeserve_requests_waiting is not served by a "
             "prometheus-adapter rule"),
            ("seriesQuery: 'spikeserve_requests_waiting{",
             "seriesQuery: 'spikeserve_requests_queued{",
             "reads spikeserve_requests_queued, which is not a gauge"),
            ('pod: {resource: "pod"}', 'instance: {resource: "node"}',
             "must associate the namespace and pod labels"),
            ("{<<.LabelMatchers>>}", "", "metricsQuery lacks <<.LabelMatchers>>"),
        ]
        for old, new, message in cases:
            self.assertIn(old, text)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "adapter-rules.yaml")
                with open(path, "w") as f:
                    f.write(text.replace(old, new, 1))
                p = run(["/usr/bin/python3", CHECK, "--adapter-rules", path,
                         os.path.join(K8S, "overlays", "example")])
                self.assertEqual(p.returncode, 1, (new, p.stdout))
                self.assertIn(message, p.stdout, new)

    def test_adapter_queries_are_promql(self):
        # The adapter fills in its placeholders and sends the query to
        # Prometheus: with them filled in as it would for the HPA, promtool
        # must accept the query.
        if not shutil.which("promtool"):
            self.skipTest("promtool (Debian package prometheus) not installed")
        with open(ADAPTER_RULES) as f:
            rules = yaml.safe_load(f)["rules"]
        group = []
        for i, rule in enumerate(rules):
            series = re.match(r"\s*(\w+)", rule["seriesQuery"]).group(1)
            expr = (rule["metricsQuery"]
                    .replace("<<.Series>>", series)
                    .replace("<<.LabelMatchers>>",
                             'namespace="spikeserve",pod=~"spikeserve-.*"')
                    .replace("<<.GroupBy>>", "pod"))
            group.append({"record": "adapter:rule%d" % i, "expr": expr})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rules.yml")
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "adapter",
                                            "rules": group}]}, f)
            p = run(["promtool", "check", "rules", path])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_image_and_manifests_agree(self):
        expose, env, health = dockerfile()
        dep = next(o for o in render(K8S) if o["kind"] == "Deployment")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(set(ports.values()), expose)
        self.assertEqual(str(ports["grpc"]), env["SPIKESERVE_GRPC_PORT"])
        self.assertEqual(str(ports["metrics"]), env["SPIKESERVE_METRICS_PORT"])
        kenv = {e["name"]: e.get("value") for e in c["env"]}
        for k in ("SPIKESERVE_MODEL", "SPIKESERVE_GRPC_PORT",
                  "SPIKESERVE_METRICS_PORT", "SPIKESERVE_DRAIN_TIMEOUT",
                  "SPIKESERVE_HOST"):
            self.assertEqual(kenv[k], env[k], k)
        # Every SPIKESERVE_* variable names a real server flag.
        with open(os.path.join(ROOT, "server", "main.cc")) as f:
            flags = set(re.findall(r"ABSL_FLAG\(\s*[\w:]+,\s*(\w+),", f.read()))
        for k in list(env) + list(kenv):
            if k.startswith("SPIKESERVE_"):
                self.assertIn(k[len("SPIKESERVE_"):].lower(), flags, k)
        # The plan: mounted where SPIKESERVE_PLAN points, from the ConfigMap.
        mount = next(m for m in c["volumeMounts"] if m["name"] == "plan")
        self.assertEqual(os.path.dirname(kenv["SPIKESERVE_PLAN"]),
                         mount["mountPath"])
        # Probes check the same service the image's HEALTHCHECK probe does
        # by default, which the server registers.
        with open(os.path.join(ROOT, "tools", "health_probe_main.cc")) as f:
            probe_default = re.search(r'ABSL_FLAG\(std::string, service, "([^"]*)"',
                                      f.read()).group(1)
        with open(os.path.join(ROOT, "server", "server.cc")) as f:
            self.assertIn('kServiceName[] = "%s"' % probe_default, f.read())
        self.assertIn("spikeserve-health-probe", health)
        for probe in ("startupProbe", "readinessProbe"):
            self.assertEqual(c[probe]["grpc"]["service"], probe_default)
            self.assertEqual(c[probe]["grpc"]["port"], ports["grpc"])

    def test_http_port_is_the_server_default(self):
        # The manifests leave --http_port at its default; the container port
        # named http must be that default.
        with open(os.path.join(ROOT, "server", "main.cc")) as f:
            m = re.search(r"ABSL_FLAG\(\s*int,\s*http_port,\s*(-?\d+)", f.read())
        if not m:
            self.skipTest("server/main.cc has no --http_port flag yet")
        dep = next(o for o in render(K8S) if o["kind"] == "Deployment")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports["http"], int(m.group(1)))
        self.assertNotIn("SPIKESERVE_HTTP_PORT",
                         {e["name"] for e in c["env"]})

    def test_plan_configmap_holds_the_committed_plan(self):
        cm = next(o for o in render(K8S) if o["kind"] == "ConfigMap")
        with open(os.path.join(ROOT, "plans", "smollm2-135m-instruct.json")) as f:
            committed = json.load(f)
        self.assertEqual(json.loads(cm["data"]["quant-plan.json"]), committed)
        self.assertLess(len(cm["data"]["quant-plan.json"]), 1 << 20)


def kustomize_major():
    """The major version of kubectl's built-in kustomize (0 when it prints
    none: kubectl 1.20 and older, whose kustomize v2 knows neither `labels`
    nor inline `patches`, which the manifests use)."""
    p = run(["kubectl", "version", "--client"])
    m = re.search(r"Kustomize Version: v(\d+)", p.stdout)
    return int(m.group(1)) if m else 0


if __name__ == "__main__":
    missing = [t for t in ("kubectl", "yamllint") if not shutil.which(t)]
    if not missing and kustomize_major() < 4:
        missing = ["kubectl >= 1.21 (kustomize v4 or later; this kubectl's "
                   "is older, e.g. Debian 12's kubernetes-client 1.20)"]
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(1 if os.environ.get("CI") == "true" else 77)
    unittest.main(verbosity=2)
