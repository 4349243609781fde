#!/usr/bin/env python3
"""spikeserve vs llama.cpp on this machine, same run, alternating.

Measures, for each model, llama-bench's two numbers on both engines:
prompt processing of --prompt_tokens tokens (pp) and --decode_tokens
single-token decodes (tg), --repetitions times, alternating engines and
their order, and prints medians and ratios as JSON (stdout) and a markdown
table (--markdown FILE, else stderr).

  llama.cpp: llama-cpp-python from PyPI in a virtual environment (built from
             source with native CPU flags), the model converted to Q8_0 by its
             own quantizer; 2 threads for pp, the faster of 1 and 2 for tg.
  spikeserve: build/bench/spikeserve-speed, INT8 W8A8: the default model with
             its default plan (plans/), the synthetic model with dynamic
             per-tensor scales; lm_head auto (BF16 on CPUs with BF16
             instructions, else INT8); OMP_NUM_THREADS=2.

Models: `default` (SmolLM2-135M-Instruct), `tinyllama` (random weights of
TinyLlama-1.1B's shape, written by build/bench/spikeserve-synthetic-model as
Q8_0, read by both engines) and SHAPE:TYPE for any shape and type that tool
writes (e.g. llama-3.1-8b:q4_k_m, llama-3.2-1b:q8_0) or llama.cpp's quantizer
makes of it (q4_0), and default:TYPE (the real 135M model in q4_0, q4_k_m or
q8_0 by llama.cpp's quantizer), read by both engines; spikeserve serves them
as --spikeserve_quant says (w8a8, or w4a8: W4A8 re-quantized from the file). Also the memory-bandwidth bound of decode
(build/bench/membw_bench) and each engine's peak RSS.

Not part of CI (minutes; the venv build alone takes several).
  python3 bench/compare_llamacpp.py --markdown docs/performance-compare.md
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.expanduser("~/.cache/spikeserve")
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.16"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ensure_venv(venv):
    py = os.path.join(venv, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", "import llama_cpp, numpy"], capture_output=True).returncode == 0
    if not ok:
        log(f"creating {venv} and building {LLAMA_CPP_PYTHON} (several minutes)")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="2")
        subprocess.run([py, "-m", "pip", "install", "-q", LLAMA_CPP_PYTHON, "numpy"],
                       check=True, env=env)
    return py


class Worker:
    """A process that answers "pp"/"tg" lines with JSON lines."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.info = json.loads(self._line())
        self.results = {"pp": [], "tg": []}

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"{self.name} exited (rc {self.proc.wait()})")
        return line

    def run(self, test):
        self.proc.stdin.write(test + "\n")
        self.proc.stdin.flush()
        r = json.loads(self._line())
        self.results[test].append(r["tokens_per_s"])
        return r["tokens_per_s"]

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def close(self):
        rss = self.peak_rss_mib()
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()
        return rss


def bandwidth(build):
    out = subprocess.run([os.path.join(build, "bench", "membw_bench"),
                          "--benchmark_format=json", "--benchmark_repetitions=3",
                          "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            res[b["run_name"]] = b["bytes_per_second"] / 1e9
    return res  # GB/s by "BM_Copy/threads:2" etc.


def max_bandwidth(a, b):
    """Per benchmark, the higher of two measurements: this VM's bandwidth
    drifts by tens of percent over minutes, and a bound must not be lower
    than what the machine was seen to deliver."""
    return {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in set(a) | set(b)}


def ensure_models(args, py):
    models = {}
    if "default" in args.models:
        src = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
        if not os.path.exists(src):
            sys.exit(f"{src} missing: run `make model`")
        f32 = os.path.join(CACHE, "SmolLM2-135M-Instruct.F32.gguf")
        q8 = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q8_0.gguf")
        if not os.path.exists(q8):
            log(f"writing {q8}")
            subprocess.run([py, os.path.join(ROOT, "bench", "llamacpp_worker.py"), "quantize",
                            f32 if os.path.exists(f32) else src, q8], check=True)
        models["default"] = {"llama": q8, "spikeserve": src,
                             "spikeserve_args": ["--plan", os.path.join(
                                 ROOT, "plans", "smollm2-135m-instruct.json")],
                             "shape": "SmolLM2-135M-Instruct (real weights)"}
    if "tinyllama" in args.models:
        q8 = os.path.join(CACHE, "synthetic-tinyllama-1.1b.Q8_0.gguf")
        if not os.path.exists(q8):
            log(f"writing {q8}")
            subprocess.run([os.path.join(args.build, "bench", "spikeserve-synthetic-model"),
                            "--shape", "tinyllama-1.1b", "--type", "q8_0", "--out", q8],
                           check=True)
        models["tinyllama"] = {"llama": q8, "spikeserve": q8, "spikeserve_args": ["--w8a8"],
                               "shape": "TinyLlama-1.1B shape (random weights)"}
    quant = ["--w4a8"] if args.spikeserve_quant == "w4a8" else ["--w8a8"]
    for name in args.models:
        if ":" not in name:
            continue
        shape, typ = name.split(":")
        if shape == "default":
            # The real 135M model in a type of llama.cpp's own quantizer
            # (q4_0, q4_k_m, q8_0), read by both engines.
            src = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
            f32 = os.path.join(CACHE, "SmolLM2-135M-Instruct.F32.gguf")
            path = os.path.join(CACHE, f"SmolLM2-135M-Instruct.{typ}.gguf")
            if not os.path.exists(path):
                log(f"writing {path}")
                subprocess.run([py, os.path.join(ROOT, "bench", "llamacpp_worker.py"),
                                "quantize", f32 if os.path.exists(f32) else src, path,
                                "--type", typ], check=True)
            if args.spikeserve_plan:  # the original file with that plan
                models[name] = {"llama": path, "spikeserve": src,
                                "spikeserve_args": ["--plan", args.spikeserve_plan],
                                "shape": f"SmolLM2-135M-Instruct (real weights): llama.cpp "
                                         f"{typ.upper()}, spikeserve "
                                         f"{os.path.basename(args.spikeserve_plan)}"}
            else:
                models[name] = {"llama": path, "spikeserve": path, "spikeserve_args": quant,
                                "shape": f"SmolLM2-135M-Instruct {typ.upper()} (real weights)"}
            continue
        path = os.path.join(CACHE, f"synthetic-{shape}.{typ}.gguf")
        if not os.path.exists(path):
            log(f"writing {path}")
            if typ == "q4_0":  # not a type the synthetic writer has
                q8 = os.path.join(CACHE, f"synthetic-{shape}.q8_0.gguf")
                if not os.path.exists(q8):
                    subprocess.run([os.path.join(args.build, "bench",
                                                 "spikeserve-synthetic-model"),
                                    "--shape", shape, "--type", "q8_0", "--out", q8],
                                   check=True)
                subprocess.run([py, os.path.join(ROOT, "bench", "llamacpp_worker.py"),
                                "quantize", q8, path, "--type", typ], check=True)
            else:
                subprocess.run([os.path.join(args.build, "bench",
                                             "spikeserve-synthetic-model"),
                                "--shape", shape, "--type", typ, "--out", path],
                               check=True)
        models[name] = {"llama": path, "spikeserve": path, "spikeserve_args": quant,
                        "shape": f"{shape} shape {typ.upper()} (random weights)"}
    return models


def compare(name, m, args, py, bw):
    common = ["--prompt_tokens", str(args.prompt_tokens),
              "--decode_tokens", str(args.decode_tokens)]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    workers = [
        Worker("spikeserve", [os.path.join(args.build, "bench", "spikeserve-speed"),
                              "--model", m["spikeserve"], "--stdin"] + m["spikeserve_args"]
               + common, env=env),
        Worker("llama.cpp t2", [py, os.path.join(ROOT, "bench", "llamacpp_worker.py"), "serve",
                                m["llama"], "--threads", "2"] + common),
        Worker("llama.cpp t1", [py, os.path.join(ROOT, "bench", "llamacpp_worker.py"), "serve",
                                m["llama"], "--threads", "1"] + common),
    ]
    for rep in range(args.repetitions):
        order = workers if rep % 2 == 0 else workers[::-1]
        for w in order:
            tests = ("tg",) if w.name == "llama.cpp t1" else ("pp", "tg")
            got = {t: w.run(t) for t in tests}
            log(f"{name} rep {rep + 1}/{args.repetitions} {w.name}: " +
                " ".join(f"{t} {v:.1f} tok/s" for t, v in got.items()))
    rss = {w.name: w.close() for w in workers}
    s, l2, l1 = workers
    med = lambda xs: statistics.median(xs)
    llama_tg = max(med(l2.results["tg"]), med(l1.results["tg"]))
    res = {
        "shape": m["shape"],
        "spikeserve": {"pp_tok_s": med(s.results["pp"]), "tg_tok_s": med(s.results["tg"]),
                       "pp_all": s.results["pp"], "tg_all": s.results["tg"],
                       "peak_rss_mib": rss["spikeserve"], **s.info},
        "llama_cpp": {"pp_tok_s": med(l2.results["pp"]),
                           "tg_tok_s_2_threads": med(l2.results["tg"]),
                           "tg_tok_s_1_thread": med(l1.results["tg"]),
                           "pp_all": l2.results["pp"], "tg_all_2_threads": l2.results["tg"],
                           "tg_all_1_thread": l1.results["tg"],
                           "peak_rss_mib": rss["llama.cpp t2"],
                           "load_s": l2.info["load_s"],
                           "llama_cpp_python": l2.info["llama_cpp_python"]},
    }
    res["spikeserve_label"] = ("spikeserve W4A8" if "--w4a8" in m["spikeserve_args"]
                               else "spikeserve plan" if "--plan" in m["spikeserve_args"]
                               else "spikeserve W8A8")
    res["pp_ratio"] = res["spikeserve"]["pp_tok_s"] / res["llama_cpp"]["pp_tok_s"]
    res["tg_ratio"] = res["spikeserve"]["tg_tok_s"] / llama_tg
    # Bandwidth measured before this model's repetitions and right after.
    bw = max_bandwidth(bw, bandwidth(args.build))
    res["bandwidth_gb_s"] = bw
    copy = bw.get("BM_Copy/threads:2/real_time")
    read = bw.get("BM_Read/threads:2/real_time")
    wb = s.info["decode_weight_bytes"]
    if copy:
        res["decode_bound_tok_s_copy_bw"] = copy * 1e9 / wb
        res["tg_fraction_of_copy_bound"] = res["spikeserve"]["tg_tok_s"] / res[
            "decode_bound_tok_s_copy_bw"]
    if read:
        res["decode_bound_tok_s_read_bw"] = read * 1e9 / wb
        res["tg_fraction_of_read_bound"] = res["spikeserve"]["tg_tok_s"] / res[
            "decode_bound_tok_s_read_bw"]
    return res


def markdown(results, args):
    lines = [f"Measured by `python3 bench/compare_llamacpp.py` ({args.repetitions} alternating "
             f"repetitions, medians; pp = {args.prompt_tokens}-token prompt, tg = "
             f"{args.decode_tokens} decoded tokens; llama.cpp reads the same file, through llama-cpp-python "
             f"{next(iter(results.values()))['llama_cpp']['llama_cpp_python']}).", "",
             "| model | engine | pp tok/s | tg tok/s | peak RSS MiB | load s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results.values():
        s, l = r["spikeserve"], r["llama_cpp"]
        lines.append(f"| {r['shape']} | llama.cpp | {l['pp_tok_s']:.0f} | "
                     f"{l['tg_tok_s_2_threads']:.1f} (1 thread: {l['tg_tok_s_1_thread']:.1f}) | "
                     f"{l['peak_rss_mib']:.0f} | {l['load_s']:.1f} |")
        lines.append(f"| {r['shape']} | {r['spikeserve_label']} | {s['pp_tok_s']:.0f} | "
                     f"{s['tg_tok_s']:.1f} | {s['peak_rss_mib']:.0f} | {s['load_s']:.1f} |")
        lines.append(f"| {r['shape']} | **ratio** | **{r['pp_ratio']:.2f}x** | "
                     f"**{r['tg_ratio']:.2f}x** | | |")
    lines += ["", "Memory bandwidth: `build/bench/membw_bench` (1 GiB buffers, 2 threads, "
              "median of 3), the higher of the runs before and after each model's "
              "repetitions.", ""]
    for r in results.values():
        if "decode_bound_tok_s_copy_bw" in r:
            bw_m = r["bandwidth_gb_s"]
            lines.append(
                f"- {r['shape']}: decode reads {r['spikeserve']['decode_weight_bytes'] / 1e6:.0f} MB "
                f"of weights per token; bound {r['decode_bound_tok_s_copy_bw']:.0f} tok/s at copy "
                f"bandwidth {bw_m['BM_Copy/threads:2/real_time']:.1f} GB/s "
                f"({r['decode_bound_tok_s_read_bw']:.0f} at read bandwidth "
                f"{bw_m['BM_Read/threads:2/real_time']:.1f} GB/s); spikeserve "
                f"reaches {100 * r['tg_fraction_of_copy_bound']:.0f}% "
                f"({100 * r['tg_fraction_of_read_bound']:.0f}%).")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--venv", default=os.path.join(CACHE, "bench-venv"),
                    help="virtual environment for llama-cpp-python (created if missing)")
    ap.add_argument("--models", default="default,tinyllama")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--prompt_tokens", type=int, default=512)
    ap.add_argument("--decode_tokens", type=int, default=128)
    ap.add_argument("--spikeserve_quant", default="w8a8", choices=["w8a8", "w4a8"],
                    help="spikeserve's weights for the SHAPE:TYPE models (the "
                         "default model keeps its plan)")
    ap.add_argument("--spikeserve_plan",
                    help="for default:TYPE models: spikeserve serves the original file "
                         "with this plan (e.g. plans/smollm2-135m-instruct-w4a8.json)")
    ap.add_argument("--markdown", help="write the markdown table here")
    args = ap.parse_args()
    args.models = args.models.split(",")
    os.makedirs(CACHE, exist_ok=True)
    py = ensure_venv(args.venv)
    models = ensure_models(args, py)
    bw = bandwidth(args.build)
    results = {n: compare(n, m, args, py, bw) for n, m in models.items()}
    print(json.dumps({"bandwidth_gb_s": bw, "models": results}, indent=1))
    md = markdown(results, args)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    else:
        log(md)


if __name__ == "__main__":
    main()
