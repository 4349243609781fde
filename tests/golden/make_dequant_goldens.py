#!/usr/bin/env python3
"""Golden outputs for runtime/gguf/dequantize*.cc, from an independent
implementation: the `gguf` package from PyPI (gguf.quants.dequantize, numpy).

How to run (from the repository root):

    python3 -m venv /tmp/gguf-venv
    /tmp/gguf-venv/bin/pip install gguf numpy      # made with gguf 0.19.0
    /tmp/gguf-venv/bin/python tests/golden/make_dequant_goldens.py

It writes tests/golden/dequant_goldens.json, read by tests/dequantize_test.cc.

For every GGUF type we dequantize, BLOCKS blocks (256 elements for F16/BF16) of random bytes are made
(fixed seed), then the fp16 scale fields (d, and dmin/m where the type has
one) of the first blocks are overwritten with extreme values: max finite
+-65504, the smallest and largest subnormals, +0 and -0, and a negative
normal; block 0 also has every other byte set to 0xFF (the largest quant
codes and sub-block scales). Remaining fp16 scale fields are random finite
values (inf/NaN scales are not meaningful weights and are excluded, so the
comparison never depends on NaN payloads). The test compares float32 bit
patterns, so the goldens hold exact bits, not decimal text.

File format (JSON): {"generator": ..., "types": [{"name", "type_id",
"block_elems", "block_bytes", "num_blocks", "blocks_b64", "expected_b64"}]}
where blocks_b64 is the raw little-endian block bytes and expected_b64 the
little-endian float32 outputs (num_blocks * block_elems values).
"""

import base64
import importlib.metadata
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

BLOCKS = 16
SEED = 17

# Byte offsets of the fp16 scale fields in one block of each type
# (ggml-common.h block structs). F16/BF16 have none: every element is data.
SCALE_OFFSETS = {
    T.F16: [],
    T.BF16: [],
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],    # scales[16], qs[64], d, dmin
    T.Q3_K: [108],       # hmask[32], qs[64], scales[12], d
    T.Q4_K: [0, 2],      # d, dmin, scales[12], qs[128]
    T.Q5_K: [0, 2],      # d, dmin, scales[12], qh[32], qs[128]
    T.Q6_K: [208],       # ql[128], qh[64], scales[16], d
    T.IQ4_NL: [0],       # d, qs[16]
    T.IQ4_XS: [0],       # d, scales_h, scales_l[4], qs[128]
}

# fp16 bit patterns forced into the scale fields of blocks 0..len-1.
EXTREME_HALVES = [
    0x7BFF,  # +65504, max finite
    0xFBFF,  # -65504
    0x0001,  # smallest subnormal, 2^-24
    0x03FF,  # largest subnormal
    0x0000,  # +0
    0x8000,  # -0
    0xC500,  # -5.0, negative normal
    0x0400,  # smallest normal, 2^-14
]


def finite_half(rng):
    while True:
        h = int(rng.integers(0, 1 << 16))
        if (h >> 10) & 0x1F != 0x1F:
            return h


def num_blocks(qtype):
    # F16/BF16 "blocks" are single elements: take 256 of them.
    return 256 if qtype in (T.F16, T.BF16) else BLOCKS


def make_blocks(rng, qtype):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n = num_blocks(qtype)
    data = rng.integers(0, 256, size=(n, block_bytes), dtype=np.uint8)
    offsets = SCALE_OFFSETS[qtype]
    if qtype == T.F16:
        # Random halves; NaNs replaced by +-inf (exact in both implementations).
        h = data.view(np.uint16).reshape(-1)
        nan = ((h >> 10) & 0x1F == 0x1F) & (h & 0x3FF != 0)
        h[nan] &= 0xFC00
        # The extremes as plain elements too.
        h[: len(EXTREME_HALVES)] = EXTREME_HALVES
        return data
    if qtype == T.BF16:
        return data
    data[0, :] = 0xFF
    for b in range(BLOCKS):
        for k, off in enumerate(offsets):
            if b < len(EXTREME_HALVES):
                # Pair d with a different extreme for dmin/m so signs mix.
                h = EXTREME_HALVES[(b + 3 * k) % len(EXTREME_HALVES)]
            else:
                h = finite_half(rng)
            data[b, off] = h & 0xFF
            data[b, off + 1] = h >> 8
    return data


TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K,
         T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS]


def main():
    rng = np.random.default_rng(SEED)
    out = []
    for qtype in TYPES:
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        blocks = make_blocks(rng, qtype)
        with np.errstate(all="ignore"):
            y = gguf.quants.dequantize(blocks, qtype)
        y = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
        assert y.size == num_blocks(qtype) * block_elems, (qtype.name, y.shape)
        out.append({
            "name": qtype.name,
            "type_id": int(qtype),
            "block_elems": block_elems,
            "block_bytes": block_bytes,
            "num_blocks": num_blocks(qtype),
            "blocks_b64": base64.b64encode(blocks.astype("<u1").tobytes()).decode(),
            "expected_b64": base64.b64encode(y.astype("<f4").tobytes()).decode(),
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "dequant_goldens.json")
    with open(path, "w") as f:
        json.dump({"generator": f"gguf {importlib.metadata.version('gguf')} "
                                f"numpy {np.__version__}, seed {SEED}",
                   "types": out}, f, indent=1)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(out)} types)")


if __name__ == "__main__":
    main()
