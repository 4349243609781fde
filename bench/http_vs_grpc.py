#!/usr/bin/python3
"""Aggregate streaming throughput of the OpenAI HTTP API against gRPC, at the
same load: C concurrent streamed chats (default 16) of N tokens each
(greedy, EOS ignored, distinct prompts), rounds alternating gRPC and HTTP
on one server, medians reported (issue 19, acceptance 4).

  bench/http_vs_grpc.py --server build/server/spikeserve \
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--rounds 3]

Both clients are Python (grpcio; http.client reading server-sent events),
so client costs are alike. Prints one JSON object.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "python"))
import spikeserve_stubs  # noqa: E402
from server_process import ServerProcess  # noqa: E402


def messages(i):
    return [{"role": "user",
             "content": "Write a short story about a robot, number %d." % i}]


def grpc_stream(stub, pb, i, n):
    req = pb.GenerateRequest(
        chat=pb.ChatInput(messages=[pb.ChatMessage(**m)
                                    for m in messages(i)]),
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingParams(max_new_tokens=n, ignore_eos=True))
    tokens = 0
    for m in stub.GenerateStream(req):
        tokens += len(m.tokens)
    return tokens


def http_stream(port, i, n):
    body = json.dumps({"messages": messages(i), "max_tokens": n,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body,
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    tokens = 0
    for line in resp:
        if line.startswith(b"data: {"):
            j = json.loads(line[6:])
            if j.get("usage"):
                tokens = j["usage"]["completion_tokens"]
    conn.close()
    return tokens


def run_round(fn, concurrency):
    results = [0] * concurrency
    def worker(i):
        results[i] = fn(i)
    threads = [threading.Thread(target=worker, args=(i,))
               for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    return sum(results), secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    server = ServerProcess(
        [args.server, "--model", args.model, "--host", "127.0.0.1",
         "--grpc_port", "0", "--http_port", "0", "--metrics_port", "-1",
         "--threads", str(args.threads)], timeout=600)
    ports = server.ports
    with tempfile.TemporaryDirectory() as out:
        pb, rpc, _, _, _, _ = spikeserve_stubs.generate(out)
        channel = grpc.insecure_channel("127.0.0.1:%d" % ports["grpc"])
        stub = rpc.GenerationStub(channel)
        n = args.tokens
        fns = {"grpc": lambda i: grpc_stream(stub, pb, i, n),
               "http": lambda i: http_stream(ports["http"], i, n)}
        run_round(fns["grpc"], args.concurrency)  # warm-up
        rates = {"grpc": [], "http": []}
        for _ in range(args.rounds):
            for name in ("grpc", "http"):
                tokens, secs = run_round(fns[name], args.concurrency)
                assert tokens == n * args.concurrency, (name, tokens)
                rates[name].append(tokens / secs)
        channel.close()
    server.stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({
        "concurrency": args.concurrency, "tokens_per_stream": n,
        "grpc_tok_s": [round(x, 1) for x in rates["grpc"]],
        "http_tok_s": [round(x, 1) for x in rates["http"]],
        "median_grpc_tok_s": round(med["grpc"], 1),
        "median_http_tok_s": round(med["http"], 1),
        "http_over_grpc": round(med["http"] / med["grpc"], 3)}))


if __name__ == "__main__":
    main()
