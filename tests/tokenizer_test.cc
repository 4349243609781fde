#include "runtime/text/tokenizer.h"

#include <random>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/text/pre_tokenizer.h"
#include "runtime/text/utf8.h"

namespace spikeserve {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// GPT-2 byte-level character of byte b (hand-derived: printable ASCII maps
// to itself, space to U+0120 'Ġ', newline to U+010A 'Ċ').
std::string ByteChar(int b) {
  int n = 0, cp = -1;
  for (int c = 0; c < 256; ++c) {
    const bool printable =
        (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
    const int v = printable ? c : 256 + n++;
    if (c == b) cp = v;
  }
  std::string s;
  AppendUtf8(uint32_t(cp), &s);
  return s;
}

// A tiny byte-level BPE vocabulary: ids 0..255 are the byte characters,
// then the merge results in merge order, then specials.
struct TinyBpe {
  TokenizerSpec spec;
  int32_t Id(const std::string& piece) const {
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      if (spec.tokens[i] == piece) return int32_t(i);
    }
    ADD_FAILURE() << "no token " << piece;
    return -1;
  }
};

TinyBpe MakeTinyBpe(const std::string& pre) {
  TinyBpe t;
  t.spec.model = "gpt2";
  t.spec.pre = pre;
  for (int b = 0; b < 256; ++b) t.spec.tokens.push_back(ByteChar(b));
  const std::string G = ByteChar(' ');
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {G, "w"},
      {G, G},     {G, "b"},   {"1", "2"},   {"'", "t"}};
  for (const auto& [a, b] : merges) {
    t.spec.merges.push_back(a + " " + b);
    t.spec.tokens.push_back(a + b);
  }
  t.spec.tokens.push_back("<|im_start|>");  // control
  t.spec.tokens.push_back("<tool>");        // user-defined
  t.spec.token_types.assign(t.spec.tokens.size(), 1);
  t.spec.token_types[t.spec.tokens.size() - 2] = 3;
  t.spec.token_types[t.spec.tokens.size() - 1] = 4;
  t.spec.bos_id = int32_t(t.spec.tokens.size() - 2);
  t.spec.eos_id = t.spec.bos_id;
  return t;
}

std::vector<int32_t> Enc(const Tokenizer& tok, const std::string& s,
                         bool special = true) {
  auto ids = tok.Encode(s, /*add_special=*/false, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(BpeTokenizer, MergesByRank) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  auto tok = *Tokenizer::Create(t.spec);
  EXPECT_THAT(Enc(*tok, "hello"), ElementsAre(t.Id("hello")));
  EXPECT_THAT(Enc(*tok, "hello world"),
              ElementsAre(t.Id("hello"), t.Id(ByteChar(' ') + "w"), 'o', 'r',
                          'l', 'd'));
}

// llama.cpp's `\s+(?!\S)`: a run of spaces before a word leaves its last
// space to the word, so "a   b" is "a" "␣␣" "␣b", not "a" "␣␣␣" "b".
TEST(BpeTokenizer, WhitespaceRunGivesBackLastSpace) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  auto tok = *Tokenizer::Create(t.spec);
  const std::string G = ByteChar(' ');
  EXPECT_THAT(Enc(*tok, "a   b"), ElementsAre('a', t.Id(G + G), t.Id(G + "b")));
  // At the end of the text the whole run stays together.
  EXPECT_THAT(Enc(*tok, "a  "), ElementsAre('a', t.Id(G + G)));
  // A single newline before a word is its own piece.
  EXPECT_THAT(Enc(*tok, "\nb"), ElementsAre(t.Id(ByteChar('\n')), 'b'));
}

// smollm splits every digit first, so "12" never merges; gpt-2 does.
TEST(BpeTokenizer, SmollmSplitsDigits) {
  TinyBpe smollm = MakeTinyBpe("smollm");
  TinyBpe plain = MakeTinyBpe("gpt-2");
  EXPECT_THAT(Enc(**Tokenizer::Create(smollm.spec), "123"),
              ElementsAre('1', '2', '3'));
  EXPECT_THAT(Enc(**Tokenizer::Create(plain.spec), "123"),
              ElementsAre(plain.Id("12"), '3'));
}

// llama.cpp's "default" (also a missing tokenizer.ggml.pre) is not plain
// GPT-2: punctuation runs are cut out first, numbers in threes.
TEST(BpeTokenizer, DefaultCutsPunctuationFirst) {
  TinyBpe t = MakeTinyBpe("default");
  auto tok = *Tokenizer::Create(t.spec);
  EXPECT_THAT(Enc(*tok, "don't"), ElementsAre('d', 'o', 'n', '\'', 't'));
  EXPECT_THAT(Enc(*tok, "1212"), ElementsAre(t.Id("12"), '1', '2'));
  t.spec.pre = "";
  EXPECT_THAT(Enc(**Tokenizer::Create(t.spec), "don't"),
              ElementsAre('d', 'o', 'n', '\'', 't'));
}

// The names llama.cpp writes for the same regexes are aliases.
TEST(BpeTokenizer, PreTokenizerAliases) {
  for (const char* pre : {"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais"}) {
    TinyBpe t = MakeTinyBpe(pre);
    auto tok = Tokenizer::Create(t.spec);
    ASSERT_TRUE(tok.ok()) << pre << ": " << tok.status();
    EXPECT_THAT(Enc(**tok, "don't 123"),
                ElementsAre('d', 'o', 'n', t.Id("'t"), ' ', t.Id("12"), '3'))
        << pre;
  }
  for (const char* pre : {"smollm", "starcoder", "refact", "command-r",
                          "codeshell", "exaone", "minerva-7b"}) {
    TinyBpe t = MakeTinyBpe(pre);
    auto tok = Tokenizer::Create(t.spec);
    ASSERT_TRUE(tok.ok()) << pre << ": " << tok.status();
    EXPECT_THAT(Enc(**tok, "12"), ElementsAre('1', '2')) << pre;
  }
  for (const char* pre :
       {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
        "midm-2.0", "lfm2", "dbrx", "smaug-bpe", "qwen2", "deepseek-llm",
        "deepseek-coder", "falcon"}) {
    TinyBpe t = MakeTinyBpe(pre);
    EXPECT_TRUE(Tokenizer::Create(t.spec).ok()) << pre;
  }
  // llama.cpp adds BOS by default for the LLaMA 3 family only.
  EXPECT_TRUE(PreTokenizer::DefaultAddBos("llama-bpe"));
  EXPECT_TRUE(PreTokenizer::DefaultAddBos("pixtral"));
  EXPECT_FALSE(PreTokenizer::DefaultAddBos("dbrx"));
  EXPECT_FALSE(PreTokenizer::DefaultAddBos("qwen2"));
}

TEST(BpeTokenizer, ContractionIsItsOwnPiece) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  auto tok = *Tokenizer::Create(t.spec);
  EXPECT_THAT(Enc(*tok, "don't"), ElementsAre('d', 'o', 'n', t.Id("'t")));
}

TEST(BpeTokenizer, SpecialTokens) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  auto tok = *Tokenizer::Create(t.spec);
  const int32_t start = t.Id("<|im_start|>"), tool = t.Id("<tool>");
  EXPECT_THAT(Enc(*tok, "<|im_start|>he"), ElementsAre(start, t.Id("he")));
  // Not parsed: the control token's text is plain text...
  EXPECT_EQ(Enc(*tok, "<|im_start|>", false).size(), 12u);
  // ...but user-defined tokens are always recognised (as in llama.cpp).
  EXPECT_THAT(Enc(*tok, "<tool>", false), ElementsAre(tool));
  auto with_bos = tok->Encode("he", /*add_special=*/true, true);
  EXPECT_THAT(*with_bos, ElementsAre(t.Id("he")));  // add_bos is false
  t.spec.add_bos = true;
  auto tok2 = *Tokenizer::Create(t.spec);
  EXPECT_THAT(*tok2->Encode("he", true, true), ElementsAre(start, t.Id("he")));
}

TEST(BpeTokenizer, DecodeRoundTripsBytes) {
  TinyBpe t = MakeTinyBpe("smollm");
  auto tok = *Tokenizer::Create(t.spec);
  for (const std::string s :
       {"hello world", "  leading", "tabs\t\tand\nnewlines\n\n", "é日本😀",
        "a   b  ", "x\r\ny", "12,345.67", "<|im_start|>hi<tool>"}) {
    EXPECT_EQ(*tok->Decode(Enc(*tok, s)), s);
  }
  EXPECT_EQ(*tok->Decode(Enc(*tok, "<|im_start|>hi"), false), "hi");
  EXPECT_THAT(tok->Decode({-1}).status().message(), HasSubstr("token id -1"));
  EXPECT_FALSE(tok->TokenBytes(100000).ok());
}

TEST(BpeTokenizer, EndOfGeneration) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  t.spec.tokens.push_back("<|im_end|>");
  t.spec.token_types.push_back(3);
  auto tok = *Tokenizer::Create(t.spec);
  EXPECT_TRUE(tok->IsEndOfGeneration(t.spec.eos_id));
  EXPECT_TRUE(tok->IsEndOfGeneration(int32_t(t.spec.tokens.size() - 1)));
  EXPECT_FALSE(tok->IsEndOfGeneration('a'));
}

TEST(Tokenizer, CreateRejectsBadSpecs) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  TokenizerSpec s = t.spec;
  s.pre = "klingon";
  EXPECT_THAT(Tokenizer::Create(s).status().message(),
              AllOf(HasSubstr("'klingon'"), HasSubstr("llama-bpe")));
  s = t.spec;
  s.model = "wordpiece";
  EXPECT_THAT(Tokenizer::Create(s).status().message(),
              HasSubstr("'wordpiece'"));
  s = t.spec;
  s.merges.push_back("nospace");
  EXPECT_THAT(Tokenizer::Create(s).status().message(), HasSubstr("'nospace'"));
  s = t.spec;
  s.token_types.pop_back();
  EXPECT_FALSE(Tokenizer::Create(s).ok());
  s = t.spec;
  s.bos_id = 99999;
  EXPECT_FALSE(Tokenizer::Create(s).ok());
}

// SentencePiece: highest score merges first; bytes for unknown characters.
TokenizerSpec TinySpm() {
  TokenizerSpec s;
  s.model = "llama";
  s.add_space_prefix = true;
  s.add_bos = true;
  auto add = [&](const std::string& t, float score, int type) {
    s.tokens.push_back(t);
    s.scores.push_back(score);
    s.token_types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(buf, 0, 6);
  }
  const std::string U = "\xE2\x96\x81";  // ▁
  for (const auto& [t, score] :
       std::vector<std::pair<std::string, float>>{{U, -10},
                                                  {"h", -10},
                                                  {"e", -10},
                                                  {"l", -10},
                                                  {"o", -10},
                                                  {U + "hello", -1},
                                                  {U + "he", -2},
                                                  {"llo", -3},
                                                  {"ll", -4},
                                                  {"he", -5},
                                                  {U + "h", -6}}) {
    add(t, score, 1);
  }
  s.unk_id = 0;
  s.bos_id = 1;
  s.eos_id = 2;
  return s;
}

TEST(SpmTokenizer, MergesByScoreWithSpacePrefix) {
  const TokenizerSpec s = TinySpm();
  auto tok = *Tokenizer::Create(s);
  auto id = [&](const std::string& t) {
    return int32_t(std::find(s.tokens.begin(), s.tokens.end(), t) -
                   s.tokens.begin());
  };
  const std::string U = "\xE2\x96\x81";
  // ▁ h e l l o: ll(-4) -> llo(-3) -> he(-5) -> ▁he(-2) -> ▁hello(-1).
  EXPECT_THAT(*tok->Encode("hello", true, true),
              ElementsAre(1, id(U + "hello")));
  // é is not in the vocabulary: its UTF-8 bytes.
  EXPECT_THAT(*tok->Encode("hé", false, true),
              ElementsAre(id(U + "h"), 3 + 0xC3, 3 + 0xA9));
  EXPECT_EQ(*tok->Decode(*tok->Encode("hello hé", true, true), false),
            "hello hé");
}

// llama.cpp keys Phi-3's RSTRIP on general.name: whitespace after a special
// token is dropped (not after <s>, <unk>, <|endoftext|>); any other model
// keeps it.
TEST(SpmTokenizer, Phi3SpecialTokensEatFollowingWhitespace) {
  TokenizerSpec s = TinySpm();
  const std::string U = "\xE2\x96\x81";
  auto id = [&](const std::string& t) {
    return int32_t(std::find(s.tokens.begin(), s.tokens.end(), t) -
                   s.tokens.begin());
  };
  auto other = *Tokenizer::Create(s);
  EXPECT_THAT(*other->Encode("</s>  hello", false, true),
              ElementsAre(2, id(U), id(U), id(U + "hello")));
  s.name = "Phi3 Mini";
  auto phi3 = *Tokenizer::Create(s);
  EXPECT_THAT(*phi3->Encode("</s>  hello", false, true),
              ElementsAre(2, id(U + "hello")));
  EXPECT_THAT(*phi3->Encode("<s>  hello", false, true),
              ElementsAre(1, id(U), id(U), id(U + "hello")));
}

// Every pre-tokenizer cuts the text into pieces that concatenate back to
// it, never empty, on random bytes (invalid UTF-8 included) and on text.
TEST(PreTokenizer, PiecesCoverTheText) {
  std::mt19937 rng(7);
  std::vector<std::string> texts = {"Hello, world! 123 4567 \t\n\n  x",
                                    "日本語 한국어 😀 a\u00a0 b\u3000c ÷ø"};
  const std::string alphabet = " \t\n\r'aZ09.,!$<`";
  for (int i = 0; i < 200; ++i) {
    std::string t;
    const int n = int(rng() % 40);
    for (int k = 0; k < n; ++k) {
      t += rng() % 3 == 0 ? char(rng() % 256)
                          : alphabet[rng() % alphabet.size()];
    }
    texts.push_back(t);
  }
  std::vector<std::string> names =
      absl::StrSplit(PreTokenizer::SupportedNames(), ", ", absl::SkipEmpty());
  ASSERT_GE(names.size(), 20u);
  for (const std::string& name : names) {
    auto pre = PreTokenizer::Create(name);
    ASSERT_TRUE(pre.ok()) << name << ": " << pre.status();
    for (const std::string& t : texts) {
      std::string joined;
      for (absl::string_view piece : (*pre)->Split(t)) {
        EXPECT_FALSE(piece.empty()) << name;
        joined.append(piece.data(), piece.size());
      }
      EXPECT_EQ(joined, t) << name;
    }
  }
}

// llama.cpp gives no tokens for an empty text, whatever the vocabulary.
TEST(Tokenizer, EmptyTextHasNoTokens) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  EXPECT_TRUE(Enc(**Tokenizer::Create(t.spec), "").empty());
  auto spm = *Tokenizer::Create(TinySpm());
  EXPECT_TRUE(spm->Encode("", false, false)->empty());
  EXPECT_TRUE(spm->Encode("", false, true)->empty());
  EXPECT_THAT(*spm->Encode("", true, true), ElementsAre(1));  // BOS only
}

TEST(StreamingDetokenizer, HoldsBackIncompleteUtf8) {
  TinyBpe t = MakeTinyBpe("gpt-2");
  auto tok = *Tokenizer::Create(t.spec);
  StreamingDetokenizer d(tok.get());
  // U+1F600 = F0 9F 98 80, one byte token each.
  EXPECT_EQ(*d.Push(0xF0), "");
  EXPECT_EQ(*d.Push(0x9F), "");
  EXPECT_EQ(*d.Push(0x98), "");
  EXPECT_EQ(*d.Push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(*d.Push('a'), "a");
  // An invalid byte becomes U+FFFD; an unfinished tail too, at Flush.
  EXPECT_EQ(*d.Push(0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(*d.Push(0xE6), "");
  EXPECT_EQ(d.Flush(), "\xEF\xBF\xBD");
  EXPECT_FALSE(d.Push(-5).ok());
}

TEST(StreamingDetokenizer, ConcatenationEqualsText) {
  TinyBpe t = MakeTinyBpe("smollm");
  auto tok = *Tokenizer::Create(t.spec);
  const std::string text =
      "mixed ünïcödé 日本語 and emoji 👍🏽 done";
  StreamingDetokenizer d(tok.get());
  std::string out;
  for (int32_t id : Enc(*tok, text)) {
    std::string piece = *d.Push(id);
    size_t bad;
    EXPECT_EQ(CompleteUtf8Prefix(piece, &bad), piece.size());  // valid UTF-8
    out += piece;
  }
  out += d.Flush();
  EXPECT_EQ(out, text);
}

}  // namespace
}  // namespace spikeserve
