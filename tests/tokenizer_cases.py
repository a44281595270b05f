"""Curated tricky strings for the tokenizer parity tests (each must encode exactly as Rust ``tokenizers`` does)."""

from __future__ import annotations

# Every code point the Rust `char::is_whitespace` accepts, plus the ASCII controls Python calls whitespace.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
PY_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f"
# Zero-width and format characters (Cf), some known to the reference's old tables, some newer.
FORMAT = "\u00ad\u0600\u061c\u06dd\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2060\u2066\u2069\ufeff\ufff9\U000110bd\U000e0001\U000e0041"
NEWER_FORMAT = "\u0890\u0891\u08e2\U000110cd\U00013430\U00013438"
COMBINING = "\u0300\u0301\u0308\u0327\u0334\u0345\u0489\u05b0\u0670\u0903\u093c\u1ab0\u1dc0\u20d0\u20dd\ufe20"
NEWER_MARKS = "\u07fd\u0898\u08ca\u1abf\u1ac0\u1df6\U00011938\U00016ff0\U0001e130"

CASES: list[str] = [
    "",
    " ",
    "   \t\n  ",
    "a",
    "Hello, world!",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "UPPER lower MiXeD",
    "don't stop-believing (really) [ok] {yes} <no> a/b a\\b a|b ~tilde ^caret `grave` $5 +1 =2 @me #tag %pct &amp *star _under",
    "e-mail: someone@example.com, url: https://example.org/path?q=1&x=2#frag",
    "3.14159 1,000,000 1e-9 0x1F 42nd 2020-01-01T12:00:00Z",
    # accents and combining marks
    "naïve café résumé façade Zürich São Paulo Ångström",
    "e\u0301 e\u0301\u0327 \u0301alone a\u0327\u0301 o\u0308\u0304",
    "".join("a" + c for c in COMBINING),
    COMBINING,
    "x" + NEWER_MARKS + "y",
    "a\u0301" + "".join(NEWER_MARKS) + "\u0316b",
    "\U00011938\u0301 \U0001d165\u1ac0 \u1ac0\U0001d165",
    "İstanbul IĞDIR ΟΔΟΣ Σίσυφος ΣΑΣ ß ẞ ǅ ǈ ﬁ ﬀ ŉ",
    "Ⅻ ⓐ Ⓐ 𝐀𝐁𝐂 ＡＢＣ ａｂｃ ｶﾀｶﾅ",
    # CJK and other scripts
    "中文字符测试",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트 테스트",
    "混合English和中文text",
    "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 𮯠 \U00030000 \U00031350 丽 兀 \ufa6e",
    "Привет, мир! Ελληνικά עברית العربية हिन्दी ไทย ქართული Ⴀ ᲐᲑ",
    "מִבְחָן עִבְרִית עִם נִקּוּד",
    "الْعَرَبِيَّة مَعَ التَّشْكِيل",
    "தமிழ் বাংলা ગુજરાતી ਪੰਜਾਬੀ ಕನ್ನಡ മലയാളം",
    "\U00010d50\U00010d70 \U00016ea0 \u1c89 \ua7cb \ua7dc",
    # emoji and symbols
    "🥰 emoji 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 ❤️ ☃ ✓ ⌘ ∑ √ ∞ ≠ ≤ € £ ¥ © ® ™ ° ± × ÷",
    "🙂🙃😀😃😄😁 1️⃣ #️⃣",
    "«quotes» „German“ “curly” ‘single’ ‹angle› — – ‐ … · • ‰ ′ ″ ¡ ¿ § ¶",
    "\u166d\u166e \U000111c9 \u2e43\u2e44 \u061d \u2e5d",
    # whitespace, controls, specials
    "a" + WHITESPACE.join("bcdefghijklmnopqrstuvwxyz"),
    "x".join(WHITESPACE + PY_ONLY_WHITESPACE),
    "a\x00b\x01c\x07d\x1be\x7ff\x80g\x9fh",
    "\x00",
    "\ufffd",
    "a\ufffdb \ufffd\ufffd",
    "tab\there\nnew\r\nline\x0bvt\x0cff\x85nel",
    "x".join(FORMAT),
    "x".join(NEWER_FORMAT),
    "\u200bzero\u200bwidth\u200b",
    "private \ue000\uf8ff \U000f0000 \U0010fffd use",
    "unassigned \u0378 \u05ff \U0002fffe \U000e0080 \U0001fffe \ufdd0 \uffff",
    "[CLS] [SEP] [PAD] [MASK] [UNK]",
    "x[MASK]y [CLS][SEP]z [cls] [ MASK ] [MASK[MASK]]",
    "[CL\x00S] [MA\u200bSK]",
    "[UNK]" * 5,
    # long words
    "a" * 99,
    "a" * 100,
    "a" * 101,
    "b" * 300,
    "supercalifragilisticexpialidocious" * 9,
    "é" * 100,
    "é" * 101,
    "e\u0301" * 60,
    "\u0301" * 150,
    "x" * 100 + " " + "y" * 101 + "," + "z" * 300,
    "unbelievably antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "qzxqzxqzx jjjjjjjjjj xylophonist",
    "a-" * 200,
    ".,;:!?" * 50,
    "中" * 300,
    "word " * 600,
]
