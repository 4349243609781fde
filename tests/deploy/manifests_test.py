#!/usr/bin/python3
"""Deployment files: yamllint passes on deploy/, the example overlay renders
(kubectl kustomize) and passes deploy/k8s/check_manifests.py, broken copies
fail it with the expected message, the image (Dockerfile) and the manifests
agree (ports, environment, probe service, model path), and the plan
ConfigMap holds the committed plan.

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


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def render(k8s_dir):
    p = run(["kubectl", "kustomize", os.path.join(k8s_dir, "overlays", "example")])
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

    def test_overlay_renders_and_passes_the_check(self):
        kinds = sorted(o["kind"] for o in render(K8S))
        self.assertEqual(kinds, sorted([
            "Namespace", "ConfigMap", "Service", "Service", "Deployment",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"]))
        p = run(["/usr/bin/python3", CHECK,
                 os.path.join(K8S, "overlays", "example")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("0 violations", p.stdout)

    def test_broken_copies_fail(self):
        # (file in base/, text to replace, replacement, expected message)
        cases = [
            ("deployment.yaml", "readinessProbe:", "readinessProbeX:",
             "unknown field"),
            ("deployment.yaml", "          readinessProbe:\n            grpc:",
             "          readinessProbe:\n            tcpSocket:",
             "readinessProbe must be a gRPC health probe"),
            ("deployment.yaml", "runAsUser: 10001", "runAsUser: 0",
             "non-root"),
            ("deployment.yaml", "terminationGracePeriodSeconds: 45",
             "terminationGracePeriodSeconds: 20",
             "terminationGracePeriodSeconds (20) must exceed"),
            ("deployment.yaml", "readOnlyRootFilesystem: true",
             "readOnlyRootFilesystem: false", "read-only"),
            ("deployment.yaml", "              cpu: \"2\"\n              memory: 1536Mi\n          startupProbe",
             "              memory: 1536Mi\n          startupProbe",
             "must equal limits"),
            ("deployment.yaml", "containerPort: 50051", "containerPort: \"50051\"",
             "expected int"),
            ("service.yaml", "app.kubernetes.io/component: server",
             "app.kubernetes.io/component: sever", "selects no spikeserve pod"),
            ("pdb.yaml", "app.kubernetes.io/component: server",
             "app.kubernetes.io/component: db", "PodDisruptionBudget selects"),
            ("hpa.yaml", "    name: spikeserve\n  minReplicas",
             "    name: other\n  minReplicas", "HPA does not target"),
        ]
        for fname, old, new, message in cases:
            with tempfile.TemporaryDirectory() as d:
                copy = os.path.join(d, "k8s")
                shutil.copytree(K8S, copy)
                path = os.path.join(copy, "base", fname)
                with open(path) as f:
                    text = f.read()
                self.assertIn(old, text, (fname, old))
                # The limits block of the patched overlay is replaced too:
                # break only the base's requests (first occurrence).
                with open(path, "w") as f:
                    f.write(text.replace(old, new, 1))
                if fname == "deployment.yaml" and "must equal limits" in message:
                    # The example overlay sets resources itself: check base.
                    target = os.path.join(copy, "base")
                else:
                    target = os.path.join(copy, "overlays", "example")
                p = run(["/usr/bin/python3", CHECK, target])
                self.assertEqual(p.returncode, 1, (fname, new, p.stdout))
                self.assertIn(message, p.stdout, (fname, new))

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


if __name__ == "__main__":
    missing = [t for t in ("kubectl", "yamllint") if not shutil.which(t)]
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(1 if os.environ.get("CI") == "true" else 77)
    unittest.main(verbosity=2)
