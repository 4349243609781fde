#!/usr/bin/env python3
"""Golden data for spikeserve's tests from an independent implementation.

Uses llama.cpp through llama-cpp-python (never a runtime dependency) to write:
  smollm2_tokenizer.json  token ids of >= 250 strings (add_bos=False,
                          special tokens parsed), and llama.cpp's detokenization;
  smollm2_logits.json     for 6 prompts of >= 64 tokens: the 10 largest FP32
                          logits at every position, and a 32-token greedy
                          continuation.
The logits come from an all-F32 copy of the default model (weights dequantized
by llama.cpp's own quantizer, checked against the gguf package's dequantizer)
run with an F32 KV cache, so that they are comparable to spikeserve's FP32
path, which dequantizes the same Q4_1/Q8_0 weights at load.

Run by hand when goldens change (see README.md here); not run by CI.
"""
import argparse
import json
import os
import sys

import numpy as np


def tokenizer_strings(special_tokens):
    """A deterministic table of test strings, by category."""
    s = []
    prose = [
        "Hello, world!", "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times.",
        "I can't believe it's not butter!", "We'll see. They're here; you've won.",
        "DON'T SHOUT. I'M LISTENING.", "Mr. Smith went to Washington.",
        "e.g. i.e. etc. vs. approx.", "What? Really?! No way...",
        "A sentence with a semicolon; and a colon: here.",
        "Quotes: \"double\" and 'single' and `back`.",
        "Parentheses (like this) and [brackets] and {braces}.",
        "The year 1999 was followed by 2000.",
        "Email me at someone@example.com or visit https://example.org/path?q=1.",
        "Hyphen-ated words and em—dashes and en–dashes.",
        "Ellipsis… and bullet • points.",
        "Once upon a time, in a land far, far away, there lived a king who had three daughters.",
        "The mitochondria is the powerhouse of the cell.",
        "To be, or not to be: that is the question.",
        "She sells sea shells by the sea shore.",
    ]
    s += prose
    code = [
        "def add(a, b):\n    return a + b\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
        "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }",
        '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
        "<html><body><p class=\"x\">Text</p></body></html>",
        "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
        "x = [i**2 for i in range(10) if i % 2 == 0]",
        "fn main() { let v: Vec<u8> = vec![1, 2, 3]; }",
        "const f = (x) => x?.y ?? 0;",
        "    indented with four spaces\n        and eight",
        "a==b && c!=d || e<=f",
        "path/to/file.txt C:\\Windows\\System32",
        "$ ls -la | grep foo > out.txt 2>&1",
        "// comment\n/* block */\n# hash",
    ]
    s += code
    numbers = ["0", "7", "42", "123", "1234", "12345", "1234567890123",
               "3.14159", "-2.5e-10", "1,000,000", "1 000 000", "2024-11-22",
               "12:30:45", "$19.99", "50%", "0x1F", "v1.2.3", "+1 (555) 123-4567",
               "9999999999999999999999", "1st 2nd 3rd 4th", "π ≈ 3.14"]
    s += numbers
    for n in range(1, 18):
        s.append(" " * n)
        s.append("a" + " " * n + "b")
    s += [" leading", "trailing ", "  both  ", "\t", "\t\t", "a\tb", "\n", "\n\n",
          "\n\n\n", "a\nb", "a\n\nb", " \n ", "\r\n", "a\r\nb", "line1\nline2\n",
          "  \n  \n", "\t\n\t", "word \n word", "x  \t  y", "end\n"]
    s += ["café", "naïve résumé", "Größe und Übermaß", "Ñandú", "Tiếng Việt có dấu",
          "Ελληνικά γράμματα", "Русский язык", "Українська мова", "français à l'été",
          "çà et là", "ø å æ", "Zürich", "São Paulo", "Dvořák", "İstanbul"]
    s += ["中文字符", "你好，世界！", "日本語のテキスト", "ひらがなとカタカナ", "한국어 텍스트",
          "混合 mixed 文本", "東京タワー", "漢字", "韓國", "中文 123 数字"]
    s += ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "❤️", "Hello 🌍!", "🙂🙃",
          "emoji in text 🎉 here", "✓ ✗ ★", "🏳️‍🌈"]
    s += ["", " ", "a", "A", ".", "!!!", "???", "---", "...", "$$$", "***",
          "@#%&", "<>", "{}", "[]", "()", "\\", "/", "|", "~`^"]
    # Every special token alone and embedded in text.
    for tok in special_tokens:
        s.append(tok)
        s.append(f"before{tok}after")
        s.append(f"{tok}\nHi there {tok}")
    s += ["<|im_start|>user\nHi<|im_end|>\n",
          "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
          "<|endoftext|><|endoftext|>", "<|im_start|><|im_end|>"]
    # Words in many shapes: case, apostrophes, punctuation runs, mixes.
    words = ["hello", "Hello", "HELLO", "hElLo", "it's", "It'S", "o'clock",
             "rock'n'roll", "naïveté", "co-operate", "e-mail", "U.S.A.",
             "well-known", "don't!", "(yes)", "[no]", "a.b.c", "x_y_z", "CamelCase",
             "snake_case_name", "kebab-case-name", "ALL_CAPS_42", "mixed123abc",
             "abc123def456", "3D", "4K", "MP3", "CO2", "H2O", "x86_64", "ARMv8"]
    s += words
    s += [f"{w} {w}" for w in words[:10]]
    s += [" " + w for w in words[:10]]
    # Longer mixed texts.
    s += [" ".join(prose[:5]), "\n".join(code[:3]), " ".join(numbers),
          "Mixed: café 中文 😀 123 \t tab\nnewline <|im_end|> done."]
    # Deduplicate, keep order.
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


PROMPTS = [
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden press adapted from those used to make wine. "
    "Within fifty years presses had spread to more than two hundred cities across Europe, and the number "
    "of books in circulation rose from thousands to millions.",
    "<|im_start|>system\nYou are a helpful assistant who answers clearly and briefly.<|im_end|>\n"
    "<|im_start|>user\nExplain in a few sentences why the sky is blue during the day, and mention what "
    "happens at sunset and at sunrise, when the light travels through much more of the atmosphere before it reaches "
    "our eyes.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in "
    "range(n):\n        a, b = b, a + b\n    return a\n\n\ndef main():\n    for i in range(10):\n        "
    "print(i, fibonacci(i))\n",
    "Shopping list for the week:\n1. Eggs (12)\n2. Milk, 2 liters\n3. Bread - whole wheat\n4. Apples, "
    "about 1.5 kg\n5. Coffee beans, 500 g\n6. Rice, 2 kg\n7. Tomatoes (6)\n8. Olive oil\nTotal budget: $45.",
    "Once upon a time there was a little robot who lived in a lighthouse by the sea. Every night it "
    "turned on the great lamp and watched the ships pass safely in the dark. The fishermen waved at it "
    "in the mornings, and the gulls sat on its shoulders. One stormy evening, when the waves were "
    "higher than the rocks, the lamp went out, and the robot had to",
    "Les élèves ont étudié l'histoire de France et la géographie. Die Schüler lernten Mathematik. "
    "学生们学习了数学和科学。 The students also learned that 2 + 2 = 4 and that water boils at 100 °C "
    "at sea level, while on a high mountain it boils at a lower temperature.",
]


def convert_to_f32(llama_cpp, src, dst):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


def check_f32(src, dst):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    a = {t.name: t for t in GGUFReader(src).tensors}
    b = {t.name: t for t in GGUFReader(dst).tensors}
    assert a.keys() == b.keys(), "tensor sets differ"
    worst = 0.0
    for name, t in a.items():
        u = b[name]
        assert u.tensor_type.name == "F32", f"{name} is {u.tensor_type.name} in the F32 copy"
        ref = dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        got = np.asarray(u.data, dtype=np.float32).reshape(-1)
        worst = max(worst, float(np.max(np.abs(ref - got))))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--model", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--f32", default=os.path.expanduser("~/.cache/spikeserve/SmolLM2-135M-Instruct.F32.gguf"))
    ap.add_argument("--out", default=here)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama
    from gguf import GGUFReader

    version = llama_cpp.__version__
    reader = GGUFReader(args.model)
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    types_field = reader.fields["tokenizer.ggml.token_type"]
    texts = [bytes(tokens_field.parts[i]).decode("utf-8") for i in tokens_field.data]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    specials = [t for t, ty in zip(texts, types) if ty in (3, 4)]

    # 1. Tokenizer.
    vocab = Llama(model_path=args.model, vocab_only=True, verbose=False)
    cases = []
    for text in tokenizer_strings(specials):
        ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        detok = vocab.detokenize(ids, special=True).decode("utf-8", errors="replace")
        cases.append({"text": text, "ids": ids, "detok": detok})
    bad = [c["text"] for c in cases if c["detok"] != c["text"]]
    with open(os.path.join(args.out, "smollm2_tokenizer.json"), "w") as f:
        json.dump({"model": os.path.basename(args.model), "llama_cpp_python": version,
                   "made_by": "tests/golden/make_goldens.py",
                   "tokenize": "add_bos=False, special=True", "cases": cases},
                  f, ensure_ascii=False)
    print(f"tokenizer: {len(cases)} strings, {len(specials)} special tokens, "
          f"{len(bad)} with detok != text: {bad[:5]}")
    del vocab

    # 2. F32 copy and its check.
    os.makedirs(os.path.dirname(args.f32), exist_ok=True)
    if not os.path.exists(args.f32):
        convert_to_f32(llama_cpp, args.model, args.f32)
    worst = check_f32(args.model, args.f32)
    print(f"f32 copy: {args.f32}, max |llama.cpp - gguf dequantize| = {worst:g}")

    # 3. Logits with an F32 KV cache.
    llm = Llama(model_path=args.f32, n_ctx=512, n_batch=512, n_threads=2, logits_all=True,
                type_k=0, type_v=0, flash_attn=False, seed=0, verbose=False)
    prompts = []
    for text in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert len(ids) >= 64, f"prompt has {len(ids)} tokens: {text[:40]!r}"
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
        top_ids, top_logits = [], []
        for row in scores:
            idx = np.argsort(-row, kind="stable")[:10]
            top_ids.append([int(i) for i in idx])
            top_logits.append([float(f"{row[i]:.7g}") for i in idx])
        greedy = []
        last = scores[-1]
        for _ in range(32):
            tok = int(np.argmax(last))
            greedy.append(tok)
            llm.eval([tok])
            last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        prompts.append({"text": text, "ids": ids, "top_ids": top_ids,
                        "top_logits": top_logits, "greedy_ids": greedy})
        print(f"prompt: {len(ids)} tokens, greedy {llm.detokenize(greedy)[:60]!r}")
    with open(os.path.join(args.out, "smollm2_logits.json"), "w") as f:
        json.dump({"model": os.path.basename(args.model), "llama_cpp_python": version,
                   "made_by": "tests/golden/make_goldens.py",
                   "weights": "all-F32 copy (llama_model_quantize ftype ALL_F32)",
                   "kv_cache": "F32 (type_k = type_v = 0), no flash attention",
                   "tokenize": "add_bos=False, special=True", "top_k": 10,
                   "prompts": prompts}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
