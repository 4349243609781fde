#!/usr/bin/python3
"""Observability end to end: the spikeserve binary's /metrics passes
`promtool check metrics`, deploy/prometheus/ passes `promtool check rules`
and `check config`, and a real Prometheus (Debian package `prometheus`),
started on loopback with the project's scrape config pointed at the test
server, scrapes it: its HTTP API returns the per-layer spike and latency
series of every layer and site.

  /usr/bin/python3 tests/python/prometheus_test.py --server build/server/spikeserve \
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --plan plans/smollm2-135m-instruct.json

Exit code 77 (CTest: skipped) when the model or Prometheus is missing,
unless CI=true.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "deploy", "prometheus")
ARGS = None
sys.path.insert(0, HERE)
from server_process import ServerProcess  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


class Spikeserve:
    """The binary on loopback with gRPC and metrics on free ports."""

    def __init__(self):
        cmd = [ARGS.server, "--model", ARGS.model, "--host", "127.0.0.1",
               "--grpc_port", "0", "--metrics_port", "0", "--http_port", "0",
               "--threads", "2"]
        if ARGS.plan:
            cmd += ["--plan", ARGS.plan]
        self.process = ServerProcess(cmd)
        self.proc, self.log = self.process.proc, self.process.log
        self.grpc_port = self.process.ports["grpc"]
        self.metrics_port = self.process.ports.get("metrics")
        if self.metrics_port is None:
            raise RuntimeError("no metrics port:\n" + "".join(self.log))

    def generate(self, n):
        """A few requests through the Python client stubs (for traffic)."""
        sys.path.insert(0, ARGS.stubs)
        import grpc
        from spikeserve.v1 import generation_pb2 as pb
        from spikeserve.v1 import generation_pb2_grpc as rpc
        with grpc.insecure_channel("127.0.0.1:%d" % self.grpc_port) as ch:
            stub = rpc.GenerationStub(ch)
            for i in range(n):
                stub.Generate(pb.GenerateRequest(
                    text="The number %d is" % i,
                    stopping=pb.StoppingParams(max_new_tokens=8,
                                               ignore_eos=True)))

    def stop(self):
        return self.process.stop()


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Spikeserve()
        cls.server.generate(3)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("spikeserve exited %d" % code)

    def test_promtool_accepts_the_scrape(self):
        scrape = http_get("http://127.0.0.1:%d/metrics" %
                          self.server.metrics_port)
        self.assertIn("spikeserve_activation_spike_ratio", scrape)
        p = subprocess.run(["promtool", "check", "metrics"], input=scrape,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_dashboard_and_alerts_use_exported_metrics(self):
        scrape = http_get("http://127.0.0.1:%d/metrics" %
                          self.server.metrics_port)
        exported = set(re.findall(r"^(spikeserve_\w+)", scrape, re.M))
        for path in [os.path.join(ROOT, "deploy", "grafana", "spikeserve.json"),
                     os.path.join(DEPLOY, "alerts.yml"),
                     os.path.join(DEPLOY, "adapter-rules.yaml")]:
            with open(path) as f:
                used = set(re.findall(r"spikeserve_[a-z_]+", f.read()))
            used -= {"spikeserve_"}
            self.assertTrue(used, path)
            self.assertEqual(used - exported, set(), path)

    def test_promtool_accepts_rules_and_config(self):
        for args in (["check", "rules", os.path.join(DEPLOY, "alerts.yml")],
                     ["check", "config",
                      os.path.join(DEPLOY, "prometheus.yml")]):
            p = subprocess.run(["promtool"] + args, capture_output=True,
                               text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_prometheus_scrapes_per_layer_series(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(DEPLOY, "prometheus.yml")) as f:
                config = f.read()
            # The project's config, pointed at the test server and scraping
            # every second.
            config = config.replace(
                "localhost:9464", "127.0.0.1:%d" % self.server.metrics_port)
            config = re.sub(r"scrape_interval: \d+s", "scrape_interval: 1s",
                            config)
            config = re.sub(r"scrape_timeout: \d+s", "scrape_timeout: 1s",
                            config)
            with open(os.path.join(d, "prometheus.yml"), "w") as f:
                f.write(config)
            shutil.copy(os.path.join(DEPLOY, "alerts.yml"), d)
            port = free_port()
            prom = subprocess.Popen(
                ["prometheus", "--config.file=" + os.path.join(d, "prometheus.yml"),
                 "--storage.tsdb.path=" + os.path.join(d, "data"),
                 "--web.listen-address=127.0.0.1:%d" % port],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                api = "http://127.0.0.1:%d/api/v1/query?query=" % port
                spikes, latency = [], []
                deadline = time.time() + 90
                while time.time() < deadline:
                    try:
                        spikes = json.loads(http_get(api + urllib.parse.quote(
                            "spikeserve_activation_spike_ratio")))["data"]["result"]
                        latency = json.loads(http_get(api + urllib.parse.quote(
                            'spikeserve_layer_forward_seconds_count{part="ffn"}'
                        )))["data"]["result"]
                    except OSError:
                        pass  # not listening yet
                    if len(spikes) >= 120 and len(latency) >= 30:
                        break
                    time.sleep(0.5)  # polling an external process's API
                self.assertEqual(len(spikes), 30 * 4)
                self.assertEqual(
                    {(s["metric"]["layer"], s["metric"]["site"]) for s in spikes},
                    {(str(l), site) for l in range(30)
                     for site in ("qkv", "o", "gate_up", "down")})
                self.assertEqual(len(latency), 30)
                self.assertTrue(all(float(s["value"][1]) > 0 for s in latency))
            finally:
                prom.terminate()
                prom.wait(60)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--plan", default="")
    ARGS, rest = p.parse_known_args()
    missing = [what for what, ok in [
        ("model " + ARGS.model, os.path.exists(ARGS.model)),
        ("promtool/prometheus (Debian package prometheus)",
         shutil.which("promtool") and shutil.which("prometheus"))] if not ok]
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 1 if os.environ.get("CI") == "true" else 77
    sys.path.insert(0, HERE)
    import spikeserve_stubs
    with tempfile.TemporaryDirectory() as stubs:
        spikeserve_stubs.generate(stubs)
        ARGS.stubs = stubs
        result = unittest.main(argv=[sys.argv[0]] + rest, exit=False,
                               verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
