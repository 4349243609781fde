#!/usr/bin/env python3
"""llama.cpp's perplexity of a GGUF file on spikeserve-eval's windows, so
that its 4-bit files compare with spikeserve's schemes on the same text.

The windows are spikeserve-eval's (runtime/quant/evaluation.h): the text
tokenized without special tokens, cut into consecutive windows of --window
tokens (a remainder shorter than half a window dropped), at most --windows;
each runs as [BOS] + window from an empty cache and every window token is
scored (the first from BOS's logits). Runs in a venv with llama-cpp-python
(e.g. ~/.cache/spikeserve/golden-venv):

  ~/.cache/spikeserve/golden-venv/bin/python bench/llamacpp_perplexity.py \\
      MODEL.gguf build/texts/eval.txt --windows 8
prints one JSON line {"model", "windows", "tokens", "perplexity", "nll"}.
"""
import argparse
import json
import math

import numpy as np
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    llm = Llama(model_path=args.model, n_ctx=args.window + 8, n_batch=args.window + 8,
                n_ubatch=args.window + 8, n_threads=args.threads,
                logits_all=True, verbose=False)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    windows = []
    for start in range(0, len(tokens), args.window):
        w = tokens[start:start + args.window]
        # MakeWindows' rule (runtime/quant/evaluation.cc), integer halves.
        if len(w) < args.window // 2 or len(w) < 2:
            break
        windows.append(w)
        if args.windows and len(windows) == args.windows:
            break
    if not windows:
        raise SystemExit(f"{args.text}: {len(tokens)} tokens, fewer than half "
                         f"a window of {args.window}")
    bos = llm.token_bos()
    nll, count = 0.0, 0
    for w in windows:
        llm.reset()
        llm.eval([bos] + w)
        logits = np.asarray(llm.scores[:len(w)], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(w)), w].sum())
        count += len(w)
    print(json.dumps({"model": args.model, "windows": len(windows), "tokens": count,
                      "perplexity": math.exp(nll / count), "nll": nll / count}))


if __name__ == "__main__":
    main()
