#!/usr/bin/python3
"""Loads a model in the spikeserve binary and checks that it serves it within
the memory issue 17 allows (acceptance 4 and 6): SERVING, a unary Generate
and a stream of the same greedy request giving the same tokens, peak RSS
(VmHWM) against the weights the server says it keeps, and the load time.

  bench/serve_check.py --server build/server/spikeserve \
      --model /work/synth/llama-3.1-8b-q4_k_m.gguf [-- extra server flags]

Prints one JSON object; exit code 1 when a check fails. Synthetic models of
real shapes: build/bench/spikeserve-synthetic-model (see docs/performance.md).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "python"))
import spikeserve_stubs  # noqa: E402


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    pb, rpc, health_pb, health_rpc, _, _ = spikeserve_stubs.generate(
        tempfile.mkdtemp())
    cmd = [args.server, "--model", args.model, "--host", "127.0.0.1",
           "--grpc_port", "0", "--metrics_port", "-1", "--http_port", "-1"] + args.extra
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    log, port = [], []
    listening = threading.Event()

    def pump():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port.append(int(m.group(1)))
                listening.set()
        listening.set()

    threading.Thread(target=pump, daemon=True).start()
    if not listening.wait(120) or not port:
        sys.exit("server did not start:\n" + "".join(log))
    channel = grpc.insecure_channel(f"127.0.0.1:{port[0]}")
    stub = rpc.GenerationStub(channel)
    health = health_rpc.HealthStub(channel)
    for resp in health.Watch(health_pb.HealthCheckRequest(), timeout=1800):
        if resp.status == health_pb.HealthCheckResponse.SERVING:
            break
    serving_s = time.monotonic() - t0
    req = pb.GenerateRequest(
        text="The quick brown fox", add_special_tokens=True,
        stopping=pb.StoppingParams(max_new_tokens=args.tokens, ignore_eos=True))
    t1 = time.monotonic()
    unary = stub.Generate(req, timeout=600)
    unary_s = time.monotonic() - t1
    streamed = []
    for msg in stub.GenerateStream(req, timeout=600):
        streamed.extend(t.id for t in msg.tokens)
    hwm_kb = status_kb(proc.pid, "VmHWM")
    rss_kb = status_kb(proc.pid, "VmRSS")
    channel.close()
    proc.terminate()
    proc.wait(120)
    text = "".join(log)
    kept = re.search(r"weights kept: ([\d.]+) MiB \(INT8 ([\d.]+), BF16 "
                     r"([\d.]+), FP32 ([\d.]+), embedding as stored ([\d.]+)\)",
                     text)
    kv = re.search(r"KV cache: .* (\d+) MiB in all", text)
    ready = re.search(r"ready in ([\d.]+) s", text)
    kept_mib = float(kept.group(1))
    kv_mib = float(kv.group(1))
    # Acceptance 4/6: peak <= 1.15 x kept weights + KV pool + 300 MB.
    bound_mib = 1.15 * kept_mib + kv_mib + 300e6 / 2**20
    result = {
        "model": os.path.basename(args.model),
        "flags": args.extra,
        "ready_s": float(ready.group(1)),
        "serving_after_s": round(serving_s, 2),
        "weights_kept_mib": kept_mib,
        "int8_mib": float(kept.group(2)),
        "bf16_mib": float(kept.group(3)),
        "fp32_mib": float(kept.group(4)),
        "embedding_mib": float(kept.group(5)),
        "kv_pool_mib": kv_mib,
        "vmhwm_mib": round(hwm_kb / 1024, 1),
        "vmrss_mib": round(rss_kb / 1024, 1),
        "bound_mib": round(bound_mib, 1),
        "unary_tokens": len(unary.tokens),
        "unary_s": round(unary_s, 2),
        "stream_equals_unary": [t.id for t in unary.tokens] == streamed,
    }
    ok = (result["vmhwm_mib"] <= bound_mib and result["stream_equals_unary"]
          and result["unary_tokens"] == args.tokens)
    result["ok"] = ok
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
