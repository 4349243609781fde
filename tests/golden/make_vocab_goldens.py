#!/usr/bin/env python3
"""Tokenizer goldens from llama.cpp beyond its own test vectors.

1. Writes small byte-level BPE test vocabularies with the `gguf` package into
   tests/data/bpe-vocab/<pre>.gguf for the pre-tokenizers llama.cpp ships no
   vocabulary for: `llama-bpe` (LLaMA 3), `qwen2` and `default` (llama.cpp's
   fallback). Each is the first MERGES merges of GPT-2's BPE (read from the
   committed copy of llama.cpp's ggml-vocab-gpt-2.gguf), the 256 byte
   characters and every merge result, a few whole words the merges do not
   build (WHOLE_WORDS: LLaMA 3's ignore_merges emits them as one token),
   and a few control and user-defined tokens; only `tokenizer.ggml.pre`
   differs between them.
2. Tokenizes llama.cpp's own test inputs and a fixed set of random strings
   (letters, accents, Greek, Cyrillic, CJK, Hangul, emoji, combining marks,
   digits of several scripts, punctuation and symbols, contractions in both
   cases, every kind of whitespace run, random code points of every plane)
   with llama.cpp (llama-cpp-python,
   add_special=False, parse_special=False) for those vocabularies and for
   every vocabulary in tests/data/llama.cpp-vocab, and writes
   tests/golden/vocab_goldens.json, read by tests/tokenizer_vocab_test.cc.
3. Tokenizes random strings that also hold special-token texts of all these
   vocabularies with add_special=True, parse_special=True (BOS/EOS as each
   file asks, special tokens parsed, Phi-3's whitespace stripping after
   them) into the same file.

How to run (from the repository root; see tests/golden/README.md):

    ~/.cache/spikeserve/golden-venv/bin/python tests/golden/make_vocab_goldens.py
"""

import ctypes
import importlib.metadata
import json
import os
import random

import gguf
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
LLAMA_VOCABS = os.path.join(TESTS, "data", "llama.cpp-vocab")
OUT_VOCABS = os.path.join(TESTS, "data", "bpe-vocab")
OUT_JSON = os.path.join(HERE, "vocab_goldens.json")

MERGES = 6000
RANDOM_STRINGS = 200
SPECIAL_STRINGS = 120
SEED = 17
# Words of PIECES that the first MERGES merges do not build into one token.
WHOLE_WORDS = ["Führer", " naïve", "camelCase", " привет", "Ωμέγα", "café",
               "HELLO", " World"]
LLAMA_CPP_VOCABS = ["llama-spm", "phi-3", "gpt-2", "starcoder", "deepseek-llm",
                    "deepseek-coder", "falcon"]
TEST_PRES = ["llama-bpe", "qwen2", "default"]


def field(reader, key):
    return reader.fields[key].contents()


def byte_chars():
    """GPT-2's bytes_to_unicode: byte -> the character standing for it."""
    printable = (list(range(33, 127)) + list(range(161, 173)) +
                 list(range(174, 256)))
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def write_test_vocab(pre):
    src = gguf.GGUFReader(os.path.join(LLAMA_VOCABS, "ggml-vocab-gpt-2.gguf"))
    all_tokens = field(src, "tokenizer.ggml.tokens")
    merges = field(src, "tokenizer.ggml.merges")[:MERGES]
    # GPT-2's first 256 tokens are the byte characters.
    tokens = list(all_tokens[:256])
    known = set(tokens)
    for m in merges:
        left, right = m.split(" ")
        if left + right not in known:
            tokens.append(left + right)
            known.add(left + right)
    chars = byte_chars()
    for word in WHOLE_WORDS:
        mapped = "".join(chars[b] for b in word.encode("utf-8"))
        if mapped not in known:
            tokens.append(mapped)
            known.add(mapped)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for text, ttype in [("<|begin_of_text|>", gguf.TokenType.CONTROL),
                        ("<|end_of_text|>", gguf.TokenType.CONTROL),
                        ("<|eot_id|>", gguf.TokenType.CONTROL),
                        ("<tool_call>", gguf.TokenType.USER_DEFINED)]:
        tokens.append(text)
        types.append(ttype)
    os.makedirs(OUT_VOCABS, exist_ok=True)
    path = os.path.join(OUT_VOCABS, pre + ".gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("bpe-test-" + pre)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 4)
    w.add_eos_token_id(len(tokens) - 3)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama_cpp_inputs():
    text = open(os.path.join(LLAMA_VOCABS, "ggml-vocab-gpt-2.gguf.inp"),
                encoding="utf-8").read()
    return text.split("\n__ggml_vocab_test__\n")[:-1]


PIECES = [
    # words, cases and contractions
    "hello", "World", "HELLO", "don't", "I'M", "we'RE", "they'll", "it'S",
    "you'd", "'ve", "'", "''", "x", "a", "Ab", "camelCase", "snake_case",
    # accents, other scripts, combining marks
    "Führer", "naïve", "café", "déjà", "Ωμέγα", "привет", "Ελλάδα", "Ǆ",
    "日本語", "中文", "한국어", "ひらがな", "カタカナ", "ﬁ", "ß", "İ", "ǅ",
    "e\u0301", "\u0301", "a\u0308b", "مرحبا", "שלום", "हिन्दी", "ไทย",
    # digits and numbers of several scripts
    "0", "7", "12", "123", "1234", "12345678", "3.14", "1,000", "٣٤٥", "①",
    "½", "Ⅻ", "１２３", "²",
    # punctuation and symbols
    ".", ",", "!", "?", "...", "!!!", "(", ")", "[]", "{}", "<", ">", "=", "==",
    "+", "-", "->", "=>", "$", "^", "~", "|", "`", "``", "@", "#", "%", "&",
    "*", "/", "\\", ":", ";", "_", '"', "€", "©", "™", "—", "…", "«»", "、",
    "。", "！", "？", "（", "）", "‘", "’", "“", "”",
    # emoji (with modifiers and joiners)
    "😀", "🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️",
    # whitespace of every kind
    " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n",
    "\n ", "\t\t", "\u00a0", "\u3000", "\u2009", "\u2028", "\u0085", "\u000b",
    "\u000c", " \u00a0", "\u00a0 ",
    # special-token look-alikes (never parsed here)
    "<|eot_id|>", "<s>", "</s>", "<tool_call>",
]


def random_code_points(rng, n):
    """Code points from every plane in use, assigned or not (no surrogates):
    they stress the Unicode category tables of both implementations."""
    out = []
    while len(out) < n:
        lo, hi = rng.choice([(0x80, 0x2FFF), (0x3000, 0xD7FF), (0xE000, 0xFFFF),
                             (0x10000, 0x1FFFF), (0x20000, 0x3FFFF)])
        out.append(chr(rng.randint(lo, hi)))
    return out


SPECIAL_PIECES = [
    "<s>", "</s>", "<unk>", "<|endoftext|>", "<|user|>", "<|end|>",
    "<|assistant|>", "<|system|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|eot_id|>", "<tool_call>", "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
    "<|EOT|>", "<fim_prefix>", ">>TITLE<<", "<|endoftext|> ", " \n ", "\n\n",
    "  ", "\t",
]


def special_strings():
    rng = random.Random(SEED + 1)
    pieces = PIECES + SPECIAL_PIECES * 4
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
            for _ in range(SPECIAL_STRINGS)]


def random_strings():
    rng = random.Random(SEED)
    pieces = PIECES + random_code_points(rng, len(PIECES))
    out = []
    for _ in range(RANDOM_STRINGS):
        n = rng.randint(1, 14)
        out.append("".join(rng.choice(pieces) for _ in range(n)))
    return out


class Tokenizer:
    def __init__(self, path):
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            raise RuntimeError("llama.cpp cannot load " + path)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def encode(self, text, special=False):
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap,
                                     special, special)
        if n < 0:
            raise RuntimeError("llama_tokenize failed")
        return list(buf[:n])


def main():
    texts = llama_cpp_inputs() + random_strings()
    special_texts = special_strings()
    vocabs = {}
    for name in LLAMA_CPP_VOCABS:
        vocabs[name] = os.path.join(LLAMA_VOCABS, "ggml-vocab-%s.gguf" % name)
    for pre in TEST_PRES:
        vocabs["test-" + pre] = write_test_vocab(pre)
    out = {
        "generator": "tests/golden/make_vocab_goldens.py with llama-cpp-python "
                     + importlib.metadata.version("llama-cpp-python")
                     + " and gguf " + importlib.metadata.version("gguf"),
        "texts": texts,
        "special_texts": special_texts,
        "vocabs": {},
    }
    for name, path in vocabs.items():
        tok = Tokenizer(path)
        out["vocabs"][name] = {
            "file": os.path.relpath(path, os.path.dirname(TESTS)),
            "ids": [tok.encode(t) for t in texts],
            "special_ids": [tok.encode(t, special=True)
                            for t in special_texts],
        }
    with open(OUT_JSON, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT_JSON, "and", len(TEST_PRES), "vocabularies in",
          OUT_VOCABS)


if __name__ == "__main__":
    main()
