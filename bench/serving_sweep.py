#!/usr/bin/env python3
"""End-to-end serving numbers at several concurrencies, and their plot.

Starts build/server/spikeserve on the default model and plan, waits until it
is SERVING, runs build/tools/spikeserve-bench at each --concurrency (streams
of --prompt_tokens random-token prompts, --max_new_tokens each, 4 requests
per client, one warm-up), stops the server, and writes:
  docs/performance-serving.json   every spikeserve-bench result
  docs/performance-serving.svg    throughput and latency vs concurrency
                                  (gnuplot, from Debian's gnuplot-nox)
and prints a markdown table. Not part of CI (a few minutes).

  python3 bench/serving_sweep.py [--concurrency 1,2,4,8,16]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_serving(build, addr, proc, timeout_s=120):
    probe = os.path.join(build, "tools", "spikeserve-health-probe")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        # The probe itself waits up to its --timeout: no busy loop here.
        if subprocess.run([probe, "--addr", addr, "--timeout", "2s"],
                          capture_output=True).returncode == 0:
            return
    sys.exit("server not SERVING in time")


def plot(rows, svg):
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
        for r in rows:
            f.write(f"{r['concurrency']} {r['output_tokens_per_s']:.2f} "
                    f"{1e3 * r['ttft_s']['p50']:.2f} {1e3 * r['ttft_s']['p99']:.2f} "
                    f"{1e3 * r['itl_s']['p50']:.2f} {1e3 * r['itl_s']['p99']:.2f}\n")
        dat = f.name
    script = f"""
set terminal svg size 960,400 font 'sans,12' background rgb 'white'
set output '{svg}'
set multiplot layout 1,2
set logscale x 2
set xlabel 'concurrent streams'
set grid
set key top left
set title 'Aggregate decode throughput'
set ylabel 'output tokens/s'
set yrange [0:*]
plot '{dat}' using 1:2 with linespoints lw 2 pt 7 title 'spikeserve W8A8'
set title 'Latency'
set ylabel 'ms'
set logscale y
set yrange [*:*]
plot '{dat}' using 1:3 with linespoints lw 2 pt 7 title 'TTFT p50', \\
     '' using 1:4 with linespoints lw 2 pt 6 dt 2 title 'TTFT p99', \\
     '' using 1:5 with linespoints lw 2 pt 5 title 'inter-token p50', \\
     '' using 1:6 with linespoints lw 2 pt 4 dt 2 title 'inter-token p99'
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.unlink(dat)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--plan", default=os.path.join(ROOT, "plans", "smollm2-135m-instruct.json"))
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--prompt_tokens", type=int, default=128)
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--port", type=int, default=50097)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance-serving"))
    args = ap.parse_args()
    addr = f"127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [os.path.join(args.build, "server", "spikeserve"), "--model", args.model,
         "--plan", args.plan, "--grpc_port", str(args.port), "--metrics_port", "-1", "--http_port", "-1",
         "--threads", "2"], stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_serving(args.build, addr, server)
        for c in [int(x) for x in args.concurrency.split(",")]:
            out = subprocess.run(
                [os.path.join(args.build, "tools", "spikeserve-bench"), "--target", addr,
                 "--concurrency", str(c), "--requests", str(max(4 * c, 8)),
                 "--prompt_tokens", str(args.prompt_tokens),
                 "--max_new_tokens", str(args.max_new_tokens),
                 "--server_pid", str(server.pid), "--json"],
                check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            if r["errors"]:
                sys.exit(f"errors at concurrency {c}: {r['errors']}")
            rows.append(r)
            print(f"concurrency {c}: {r['output_tokens_per_s']:.1f} tok/s", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    plot(rows, args.out + ".svg")
    base = rows[0]["output_tokens_per_s"]
    print("| streams | output tok/s | vs 1 stream | TTFT p50 / p99 ms | "
          "inter-token p50 / p99 ms | server RSS peak MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['output_tokens_per_s']:.1f} | "
              f"{r['output_tokens_per_s'] / base:.2f}x | "
              f"{1e3 * r['ttft_s']['p50']:.0f} / {1e3 * r['ttft_s']['p99']:.0f} | "
              f"{1e3 * r['itl_s']['p50']:.1f} / {1e3 * r['itl_s']['p99']:.1f} | "
              f"{r['server_rss_mib']['peak']:.0f} |")


if __name__ == "__main__":
    main()
