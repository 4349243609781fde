#!/usr/bin/env python3
"""Goldens for the architectures spikeserve runs, from llama.cpp.

For each case a small random-weight GGUF file (all F32) is written with the
`gguf` package from PyPI, into tests/data/arch/<case>.gguf, and llama.cpp
(through llama-cpp-python, an independent implementation) computes its FP32
logits at every position of a fixed prompt and a 32-token greedy
continuation, written to tests/data/arch/goldens.json. The C++ test
(tests/arch_golden_test.cc) loads the same files.

Cases:
  llama3   LLaMA 3.1: rope_freqs.weight (the "llama3" scaling as llama.cpp's
           converter writes it), rope base 500000, untied output
  mistral  architecture llama with attention.sliding_window, rope base 1e6,
           GQA 4:1
  qwen2    Qwen2: q/k/v biases, NeoX-order RoPE, rope base 1e6, tied
           embeddings (as Qwen2.5-0.5B)

How to run (from the repository root; see tests/golden/README.md):

    ~/.cache/spikeserve/golden-venv/bin/python tests/golden/make_arch_goldens.py
"""

import importlib.metadata
import json
import math
import os

import gguf
import llama_cpp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "data", "arch")

HIDDEN, HEADS, LAYERS, FFN, VOCAB, CONTEXT = 64, 4, 2, 128, 300, 256
HEAD_DIM = HIDDEN // HEADS
PROMPT = [5, 77, 123, 9, 250, 31, 64, 199, 3, 42, 111, 17, 280, 8, 150, 66]
CONTINUATION = 32


def llama3_factors(head_dim, base, factor):
    """LLaMA 3's rope scaling as convert_hf_to_gguf.py turns it into factors."""
    old_context, low, high = 8192, 1.0, 4.0
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / base ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high:
            out.append(1.0)
        elif wavelen > old_context / low:
            out.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


CASES = {
    "llama3": dict(arch="llama", kv_heads=2, base=500000.0, tied=False,
                   factors=llama3_factors(HEAD_DIM, 500000.0, 8.0)),
    "mistral": dict(arch="llama", kv_heads=1, base=1000000.0, tied=False,
                    sliding_window=4096, context=8192),
    "qwen2": dict(arch="qwen2", kv_heads=2, base=1000000.0, tied=True,
                  biases=True),
}


def write_model(path, name, c, rng):
    arch = c["arch"]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"arch-golden-{name}")
    w.add_block_count(LAYERS)
    w.add_context_length(c.get("context", CONTEXT))
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_freq_base(c["base"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HEAD_DIM)
    if "sliding_window" in c:
        w.add_sliding_window(c["sliding_window"])
    # A byte-level vocabulary of single characters (no merges), so that
    # both engines load it; the test feeds token ids, not text.
    tokens = [chr(0x100 + i) if i >= 2 else ["<s>", "</s>"][i]
              for i in range(VOCAB)]
    tokens[-1] = chr(0x102) + chr(0x103)  # llama.cpp needs one merge
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (VOCAB - 2))
    w.add_token_merges([chr(0x102) + " " + chr(0x103)])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def vec(n, scale, mean=0.0):
        return (mean + rng.standard_normal(n) * scale).astype(np.float32)

    kv = c["kv_heads"] * HEAD_DIM
    # Tied: a smaller embedding, or the residual stream stays the input
    # token's embedding and greedy decoding repeats it.
    w.add_tensor("token_embd.weight",
                 mat(VOCAB, HIDDEN, 0.05 if c["tied"] else 1.0))
    w.add_tensor("output_norm.weight", vec(HIDDEN, 0.1, 1.0))
    if not c["tied"]:
        w.add_tensor("output.weight", mat(VOCAB, HIDDEN, 0.125))
    if "factors" in c:
        w.add_tensor("rope_freqs.weight", c["factors"])
    s = 1 / math.sqrt(HIDDEN)
    for l in range(LAYERS):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", vec(HIDDEN, 0.1, 1.0))
        w.add_tensor(p + "attn_q.weight", mat(HIDDEN, HIDDEN, s))
        w.add_tensor(p + "attn_k.weight", mat(kv, HIDDEN, s))
        w.add_tensor(p + "attn_v.weight", mat(kv, HIDDEN, s))
        if c.get("biases"):
            w.add_tensor(p + "attn_q.bias", vec(HIDDEN, 0.5))
            w.add_tensor(p + "attn_k.bias", vec(kv, 0.5))
            w.add_tensor(p + "attn_v.bias", vec(kv, 0.5))
        w.add_tensor(p + "attn_output.weight", mat(HIDDEN, HIDDEN, s))
        w.add_tensor(p + "ffn_norm.weight", vec(HIDDEN, 0.1, 1.0))
        w.add_tensor(p + "ffn_gate.weight", mat(FFN, HIDDEN, s))
        w.add_tensor(p + "ffn_up.weight", mat(FFN, HIDDEN, s))
        w.add_tensor(p + "ffn_down.weight", mat(HIDDEN, FFN, 1 / math.sqrt(FFN)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_llama_cpp(path):
    llm = llama_cpp.Llama(model_path=path, n_ctx=CONTEXT, n_batch=CONTEXT,
                          logits_all=True, n_threads=2, verbose=False,
                          type_k=llama_cpp.GGML_TYPE_F32,
                          type_v=llama_cpp.GGML_TYPE_F32)
    llm.eval(PROMPT)
    logits = [llm.scores[i].astype(np.float32).tolist()
              for i in range(len(PROMPT))]
    greedy = []
    for _ in range(CONTINUATION):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(t)
        llm.eval([t])
    return logits, greedy


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261204)
    goldens = {
        "generator": "tests/golden/make_arch_goldens.py with llama-cpp-python "
                     + importlib.metadata.version("llama-cpp-python")
                     + ", gguf " + importlib.metadata.version("gguf"),
        "prompt": PROMPT,
        "cases": [],
    }
    for name, c in CASES.items():
        path = os.path.join(OUT, name + ".gguf")
        write_model(path, name, c, rng)
        logits, greedy = run_llama_cpp(path)
        goldens["cases"].append({"name": name, "file": name + ".gguf",
                                 "logits": logits, "greedy": greedy})
        print(name, "greedy", greedy[:8], "...")
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(goldens, f)


if __name__ == "__main__":
    main()
