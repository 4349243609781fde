"""llama.cpp's side of bench/compare_llamacpp.py; runs inside the venv that
holds llama-cpp-python.

  llamacpp_worker.py quantize SRC DST [--type q8_0|q4_0|q4_k_m]
                                           writes a copy of SRC in that type
                                           (llama.cpp's own quantizer)
  llamacpp_worker.py serve MODEL [--threads N] [--prompt_tokens 512]
                                 [--decode_tokens 128]
      prints {"model": ...} once, then for every "pp" / "tg" line on stdin one
      JSON line {"test", "tokens", "seconds", "tokens_per_s"}, as
      spikeserve-speed does:
        pp: one llama_decode of prompt_tokens tokens from an empty KV cache
            (logits of the last token only, llama-bench's pp);
        tg: decode_tokens single-token decodes from an empty KV cache, each
            with its logits and a greedy pick (llama-bench's tg + argmax).
"""
import argparse
import json
import sys
import time


# llama.cpp's LLAMA_FTYPE_MOSTLY_* of the types the benchmarks use.
FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}


def quantize(src, dst, typ="q8_0"):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[typ]
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize({src}) failed: {rc}")


def serve(args):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
    t_load = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=args.prompt_tokens + args.decode_tokens + 16,
                n_batch=args.prompt_tokens, n_ubatch=args.prompt_tokens,
                n_threads=args.threads, n_threads_batch=args.threads,
                logits_all=False, verbose=False)
    load_s = time.perf_counter() - t_load
    vocab = llm.n_vocab()
    rng = np.random.default_rng(1)
    prompt = [int(t) for t in rng.integers(0, vocab, args.prompt_tokens)]

    def pp():
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        return time.perf_counter() - t0

    def tg():
        llm.reset()
        nxt = prompt[0]
        t0 = time.perf_counter()
        for _ in range(args.decode_tokens):
            llm.eval([nxt])
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        return time.perf_counter() - t0

    pp(), tg()  # warm-up, as llama-bench does
    print(json.dumps({"model": args.model, "llama_cpp_python": llama_cpp.__version__,
                      "threads": args.threads, "load_s": load_s,
                      "system_info": llama_cpp.llama_print_system_info().decode()}),
          flush=True)
    for line in sys.stdin:
        test = line.strip()
        if test == "quit":
            break
        if test not in ("pp", "tg"):
            sys.exit(f"unknown test {test!r} (pp, tg)")
        n = args.prompt_tokens if test == "pp" else args.decode_tokens
        s = pp() if test == "pp" else tg()
        print(json.dumps({"test": test, "tokens": n, "seconds": s, "tokens_per_s": n / s}),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("src")
    q.add_argument("dst")
    q.add_argument("--type", default="q8_0", choices=sorted(FTYPES))
    s = sub.add_parser("serve")
    s.add_argument("model")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--prompt_tokens", type=int, default=512)
    s.add_argument("--decode_tokens", type=int, default=128)
    args = ap.parse_args()
    if args.cmd == "quantize":
        quantize(args.src, args.dst, args.type)
    else:
        serve(args)


if __name__ == "__main__":
    main()
