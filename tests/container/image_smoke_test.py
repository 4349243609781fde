#!/usr/bin/python3
"""Smoke test of the container image (run by `make image-test` after the
build): starts it with podman on loopback, waits for health SERVING, checks
the image's HEALTHCHECK, makes a streaming Generate call, scrapes /metrics,
sends SIGTERM (podman stop) and expects a clean drain and exit code 0.
Every container it starts is removed.

  /usr/bin/python3 tests/container/image_smoke_test.py --image spikeserve:latest
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import spikeserve_stubs  # noqa: E402
import grpc  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args, check=True):
    p = subprocess.run(["podman"] + list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("podman %s: %s" % (" ".join(args), p.stderr))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    args = ap.parse_args()
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    user = podman("image", "inspect", args.image, "--format",
                  "{{.Config.User}}").stdout.strip()
    check(user not in ("", "0", "root") and not user.startswith("0:"),
          "image runs as a non-root user (%s)" % user)
    size = int(podman("image", "inspect", args.image, "--format",
                      "{{.Size}}").stdout.strip())
    print("image size: %.0f MiB" % (size / 2**20))

    grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
    name = "spikeserve-smoke-%d" % os.getpid()
    with tempfile.TemporaryDirectory() as stubs:
        pb, rpc, hpb, hrpc, _, _ = spikeserve_stubs.generate(stubs)
        try:
            # No --init: the server is PID 1 and must handle SIGTERM itself.
            podman("run", "-d", "--name", name,
                   "-p", "127.0.0.1:%d:50051" % grpc_port,
                   "-p", "127.0.0.1:%d:9464" % metrics_port,
                   "-p", "127.0.0.1:%d:8080" % http_port, args.image)
            channel = grpc.insecure_channel("127.0.0.1:%d" % grpc_port)
            health = hrpc.HealthStub(channel)
            serving, deadline = False, time.time() + 300
            while time.time() < deadline and not serving:
                try:
                    serving = health.Check(
                        hpb.HealthCheckRequest(service="spikeserve.v1.Generation"),
                        timeout=2).status == hpb.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    pass  # port not forwarded yet, or still loading
                if not serving:
                    time.sleep(0.5)  # polling a process in a container
            check(serving, "health SERVING through the published port")
            hc = podman("healthcheck", "run", name, check=False)
            check(hc.returncode == 0,
                  "image HEALTHCHECK (spikeserve-health-probe) passes: " +
                  (hc.stdout + hc.stderr).strip())
            stub = rpc.GenerationStub(channel)
            text = "".join(m.text for m in stub.GenerateStream(pb.GenerateRequest(
                text="<|im_start|>user\nWhat is the capital of France?"
                     "<|im_end|>\n<|im_start|>assistant\n",
                add_special_tokens=True,
                stopping=pb.StoppingParams(max_new_tokens=32)), timeout=60))
            check("Paris" in text, "streaming Generate answers: %r" % text)
            channel.close()
            # The OpenAI API on the image's port 8080: a chat, by the
            # model's own template.
            req = urllib.request.Request(
                "http://127.0.0.1:%d/v1/chat/completions" % http_port,
                data=json.dumps({"messages": [
                    {"role": "user",
                     "content": "What is the capital of France?"}],
                    "max_tokens": 32, "temperature": 0}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.loads(r.read())["choices"][0]["message"]
            check("Paris" in answer["content"],
                  "the OpenAI chat answers: %r" % answer)
            with urllib.request.urlopen(
                    "http://127.0.0.1:%d/metrics" % metrics_port, timeout=10) as r:
                scrape = r.read().decode()
            check('spikeserve_requests_total{code="OK",protocol="grpc",rpc="GenerateStream"} 1'
                  in scrape, "/metrics counts the call")
            check('spikeserve_activation_spike_ratio{layer="29",site="down"}'
                  in scrape, "/metrics has per-layer series")
            t0 = time.time()
            podman("stop", "-t", "60", name)  # SIGTERM, then SIGKILL at 60 s
            stop_s = time.time() - t0
            code = podman("inspect", name, "--format",
                          "{{.State.ExitCode}}").stdout.strip()
            logs = podman("logs", name).stderr + podman("logs", name).stdout
            check(code == "0", "exit code 0 after SIGTERM (got %s, %.1f s)" %
                  (code, stop_s))
            check("received SIGTERM" in logs and "stopped" in logs,
                  "the log shows the drain")
        finally:
            podman("rm", "-f", "--ignore", name, check=False)
        left = podman("ps", "-a", "--filter", "name=" + name, "--format",
                      "{{.Names}}").stdout.strip()
        check(left == "", "no container left behind")
    print("image smoke test: %s" % ("PASSED" if not failures else
                                    "FAILED: " + "; ".join(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
