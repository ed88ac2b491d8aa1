"""A random-weight Whisper that the real faster-whisper / CTranslate2 loads offline.

Real Whisper weights cannot be downloaded on the machines this project is built on, yet the
batch path (STT worker -> ``faster_whisper.WhisperModel``) should run the real engine in tests
and benchmarks. This module follows the recipe in ``shared/notes/synthetic-models.md``
section 2 (verified against faster-whisper 1.2.x / ctranslate2 4.x): a transformers
``WhisperForConditionalGeneration`` with the real dimensions and seeded random weights, a
synthetic byte-level BPE tokenizer with Whisper's exact special-token ids, converted to a
CTranslate2 int8 model folder::

    model.bin                  CTranslate2 weights (int8)
    config.json                CTranslate2 config (lang_ids, suppress ids, alignment heads)
    vocabulary.json            written by the converter (the notes call it "vocabulary")
    tokenizer.json             read by faster-whisper (otherwise it goes to the hub)
    preprocessor_config.json   80 mel bins
    roomscribe-synthetic.json  stamp: size, seed, version (written last)

The output is gibberish by design: tests must assert structure (segments, words, times
ordered, language a string), never content, and never times inside the audio (with random
weights timestamps can land past the end of the clip).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import string
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

#: The model sizes :func:`build_synthetic_whisper` can write.
WhisperSize = Literal["micro", "tiny", "base", "small"]
WHISPER_SIZES: Final[tuple[WhisperSize, ...]] = get_args(WhisperSize)

#: Bump whenever the files written change, so cached models of an older recipe are rebuilt.
SYNTHETIC_WHISPER_VERSION: Final = 1
#: Name of the stamp file that marks a finished build.
STAMP_NAME: Final = "roomscribe-synthetic.json"
_STAMP_KIND: Final = "roomscribe-synthetic-whisper"

#: The files a finished model directory holds (besides the stamp).
MODEL_FILES: Final[tuple[str, ...]] = (
    "model.bin",
    "config.json",
    "vocabulary.json",
    "tokenizer.json",
    "preprocessor_config.json",
)


@dataclass(frozen=True)
class _Dims:
    d_model: int
    layers: int  # encoder layers == decoder layers, as in every openai checkpoint
    heads: int
    ffn: int


# Real dimensions (tiny 37.8M, base 72.6M, small 241.7M parameters); "micro" keeps the real
# vocabulary and audio shapes but shrinks the transformer so unit tests build it in seconds.
_DIMS: Final[dict[WhisperSize, _Dims]] = {
    "micro": _Dims(d_model=64, layers=1, heads=2, ffn=256),
    "tiny": _Dims(d_model=384, layers=4, heads=6, ffn=1536),
    "base": _Dims(d_model=512, layers=6, heads=8, ffn=2048),
    "small": _Dims(d_model=768, layers=12, heads=12, ffn=3072),
}

# --- Whisper's token layout (multilingual vocabulary, 51865 ids) -------------------------------
_VOCAB_SIZE: Final = 51865
_NUM_MEL_BINS: Final = 80
_EOT: Final = 50257  # <|endoftext|>, also bos / pad / eos
_SOT: Final = 50258  # <|startoftranscript|>, the decoder start token
_TEXT_TOKENS: Final = _EOT  # text ids are 0..50256

#: The 99 language codes in openai's order: ids 50259..50357 depend on this order.
LANGUAGES: Final[tuple[str, ...]] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su",
)  # fmt: skip

#: Special tokens from id 50257 on, in order (the language tokens go after the second one).
_SPECIAL_HEAD: Final = ("<|endoftext|>", "<|startoftranscript|>")
_SPECIAL_TAIL: Final = (
    "<|translate|>",  # 50358
    "<|transcribe|>",  # 50359
    "<|startoflm|>",  # 50360
    "<|startofprev|>",  # 50361
    "<|nocaptions|>",  # 50362
    "<|notimestamps|>",  # 50363
)
_NUM_TIMESTAMPS: Final = 1501  # <|0.00|>..<|30.00|>, ids 50364..51864

_PREPROCESSOR_CONFIG: Final[dict[str, Any]] = {
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": _NUM_MEL_BINS,
    "sampling_rate": 16000,
    "hop_length": 160,
    "chunk_length": 30,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, in its id order ("Ġ", the space, is id 220)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _text_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return the 50257 text tokens (ids 0..50256) and the BPE merges that build them.

    The 256 byte symbols make any text encodable (faster-whisper encodes ``" -"`` and ``" '"``
    when it computes the non-speech tokens, so each must give at least one id). The merges
    build ``[Ġ]?[a-z]+`` pieces, shortest first, so that whatever random ids the model emits
    decode to valid, word-like ASCII (a byte-pair vocabulary of arbitrary bytes would decode
    to replacement characters and make word splitting meaningless). The last text id is the
    empty string: CTranslate2 >= 4.7 treats a Whisper model as multilingual only if ``""`` is
    in the vocabulary; without it language detection is silently off (recipe pitfall).
    """
    vocab = {symbol: index for index, symbol in enumerate(_bytes_to_unicode().values())}
    merges: list[tuple[str, str]] = []
    wanted_merges = _TEXT_TOKENS - len(vocab) - 1  # one id left for ""
    letters = string.ascii_lowercase
    frontier = ["Ġ", *letters]
    while len(merges) < wanted_merges:
        next_frontier: list[str] = []
        for prefix in frontier:
            for letter in letters:
                if len(merges) == wanted_merges:
                    break
                merges.append((prefix, letter))
                vocab[prefix + letter] = len(vocab)
                next_frontier.append(prefix + letter)
        frontier = next_frontier
    vocab[""] = len(vocab)
    assert len(vocab) == _TEXT_TOKENS, len(vocab)
    return vocab, merges


def _special_tokens() -> list[str]:
    languages = [f"<|{code}|>" for code in LANGUAGES]
    timestamps = [f"<|{index * 0.02:.2f}|>" for index in range(_NUM_TIMESTAMPS)]
    return [*_SPECIAL_HEAD, *languages, *_SPECIAL_TAIL, *timestamps]


def _write_tokenizer(hf_dir: Path) -> dict[str, int]:
    """Write the synthetic tokenizer (``tokenizer.json`` + config) into ``hf_dir``.

    Returns:
        Token -> id for every special token, checked against Whisper's layout.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _text_vocab()
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = _special_tokens()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    ids = {token: tokenizer.token_to_id(token) for token in specials}
    # faster-whisper finds every special token by id arithmetic from these anchors, so a
    # shifted id breaks decoding silently: check the layout rather than trust it.
    expected = {token: _EOT + offset for offset, token in enumerate(specials)}
    if ids != expected or tokenizer.get_vocab_size() != _VOCAB_SIZE:
        raise RuntimeError("synthetic Whisper tokenizer does not match Whisper's token ids")
    # The converter loads the tokenizer with transformers.AutoTokenizer from the HF folder.
    PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    ).save_pretrained(str(hf_dir))
    return expected


def _alignment_heads(size: WhisperSize, dims: _Dims) -> list[tuple[int, int]]:
    """Cross-attention heads used for word timestamps: openai's real ones where known."""
    from ctranslate2.converters import transformers as ct2_transformers

    known: dict[str, list[tuple[int, int]]] = getattr(
        ct2_transformers, "_WHISPER_ALIGNMENT_HEADS", {}
    )
    heads = known.get(f"openai/whisper-{size}")
    if heads is not None:
        return [(int(layer), int(head)) for layer, head in heads]
    # micro: the converter's own default, every head of the last half of the decoder layers.
    first = dims.layers // 2
    return [(layer, head) for layer in range(first, dims.layers) for head in range(dims.heads)]


def _write_hf_model(hf_dir: Path, size: WhisperSize, seed: int) -> None:
    """Save a seeded random-weight transformers Whisper, with its tokenizer, to ``hf_dir``."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    dims = _DIMS[size]
    token_ids = _write_tokenizer(hf_dir)
    space_id = _text_vocab()[0]["Ġ"]
    config = WhisperConfig(
        vocab_size=_VOCAB_SIZE,
        num_mel_bins=_NUM_MEL_BINS,
        d_model=dims.d_model,
        encoder_layers=dims.layers,
        decoder_layers=dims.layers,
        encoder_attention_heads=dims.heads,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.ffn,
        decoder_ffn_dim=dims.ffn,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=_SOT,
        bos_token_id=_EOT,
        eos_token_id=_EOT,
        pad_token_id=_EOT,
    )
    # Seeded init on the CPU generator: the same size and seed give the same weights.
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    # lang_to_id becomes CT2's lang_ids, which language detection needs.
    # lang_to_id and alignment_heads are Whisper extras GenerationConfig keeps as plain
    # attributes (not declared fields), hence setattr.
    setattr(  # noqa: B010
        generation, "lang_to_id", {f"<|{c}|>": token_ids[f"<|{c}|>"] for c in LANGUAGES}
    )
    generation.suppress_tokens = []
    # As in the real models: no leading space or end-of-text as the first sampled token.
    generation.begin_suppress_tokens = [space_id, _EOT]
    # Needed for word timestamps (the converter guesses otherwise).
    setattr(  # noqa: B010
        generation, "alignment_heads", [list(pair) for pair in _alignment_heads(size, dims)]
    )
    generation.decoder_start_token_id = _SOT
    generation.eos_token_id = _EOT
    generation.pad_token_id = _EOT
    generation.bos_token_id = _EOT
    # A generation config marked as derived from the model config is rebuilt from it when the
    # converter loads the model (transformers 5), dropping lang_to_id and alignment_heads: CT2
    # then gets empty lang_ids and language detection fails with an IndexError.
    generation._from_model_config = False
    model.save_pretrained(str(hf_dir))
    (hf_dir / "preprocessor_config.json").write_text(
        json.dumps(_PREPROCESSOR_CONFIG, indent=2) + "\n", encoding="utf-8"
    )


def _convert(hf_dir: Path, out_dir: Path) -> None:
    """Convert the HF folder to a CTranslate2 int8 folder, copying what faster-whisper reads."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(
        str(hf_dir),
        # faster-whisper reads tokenizer.json from the model folder, and goes to the hub for
        # openai/whisper-tiny's without it (which fails offline).
        copy_files=["tokenizer.json", "preprocessor_config.json"],
    ).convert(str(out_dir), quantization="int8", force=True)


def _stamp(size: WhisperSize, seed: int) -> dict[str, Any]:
    return {
        "kind": _STAMP_KIND,
        "size": size,
        "seed": seed,
        "version": SYNTHETIC_WHISPER_VERSION,
    }


def _read_stamp(model_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def synthetic_whisper_ready(model_dir: Path, *, size: WhisperSize = "micro", seed: int = 0) -> bool:
    """Tell whether ``model_dir`` already holds a finished synthetic Whisper of this kind.

    Args:
        model_dir: A model directory, as given to :func:`build_synthetic_whisper`.
        size: The wanted size.
        seed: The wanted seed.

    Returns:
        True when the stamp matches this size, seed and recipe version and every model file
        is present.
    """
    return _read_stamp(model_dir) == _stamp(size, seed) and all(
        (model_dir / name).is_file() for name in MODEL_FILES
    )


@contextlib.contextmanager
def _scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _install(built: Path, out_dir: Path) -> None:
    """Move a finished build into place; whoever looks at ``out_dir`` sees old or new, whole."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if _read_stamp(out_dir) is None:
            raise FileExistsError(
                f"{str(out_dir)!r} is not empty and is not a synthetic model; "
                "refusing to replace it"
            )
        # An older or different synthetic build: swap it out, then delete it.
        with _scratch_dir(out_dir.parent, out_dir.name) as trash:
            out_dir.rename(trash / "old")
            built.rename(out_dir)
        return
    # rename() replaces an empty directory atomically, and fails if another builder has filled
    # out_dir meanwhile (the caller then checks whether that build is the one it wanted).
    built.rename(out_dir)


def build_synthetic_whisper(out_dir: Path, *, size: WhisperSize = "micro", seed: int = 0) -> Path:
    """Write a random-weight CTranslate2 Whisper folder that faster-whisper loads offline.

    The build is deterministic (same size and seed, same weights), atomic (written to a
    temporary directory beside ``out_dir``, then renamed into place) and cached: when
    ``out_dir`` already holds a finished model of the same size, seed and recipe version, it
    returns at once. Needs ``torch``, ``transformers``, ``tokenizers`` and ``ctranslate2``.

    Args:
        out_dir: Where the model directory goes (created; its parent too). It may exist if it
            is empty or holds an earlier synthetic model, which is then replaced.
        size: ``"micro"`` (d_model 64, 1+1 layers, ~3.6M parameters, for tests) or the real
            dimensions of ``"tiny"``, ``"base"`` or ``"small"`` (for benchmarks).
        seed: Seed of the random weights.

    Returns:
        ``out_dir``, ready for ``faster_whisper.WhisperModel(str(out_dir), device="cpu",
        compute_type="int8")`` with ``HF_HUB_OFFLINE=1``.

    Raises:
        ValueError: ``size`` is unknown.
        FileExistsError: ``out_dir`` holds other files (say, a real model): it is left alone.
    """
    if size not in WHISPER_SIZES:
        raise ValueError(f"size must be one of {', '.join(WHISPER_SIZES)}, got {size!r}")
    out_dir = Path(out_dir)
    if synthetic_whisper_ready(out_dir, size=size, seed=seed):
        return out_dir
    if out_dir.is_dir() and any(out_dir.iterdir()) and _read_stamp(out_dir) is None:
        # Fail before spending seconds on a build that _install would refuse anyway.
        raise FileExistsError(f"{str(out_dir)!r} is not empty and is not a synthetic model")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_dir(out_dir.parent, out_dir.name) as scratch:
        hf_dir = scratch / "hf"
        hf_dir.mkdir()
        built = scratch / "model"
        _write_hf_model(hf_dir, size, seed)
        _convert(hf_dir, built)
        # The stamp goes last: its presence means every other file is complete.
        (built / STAMP_NAME).write_text(
            json.dumps(_stamp(size, seed), indent=2) + "\n", encoding="utf-8"
        )
        try:
            _install(built, out_dir)
        except OSError:
            if synthetic_whisper_ready(out_dir, size=size, seed=seed):
                return out_dir  # a concurrent builder got there first with the same model
            raise
    return out_dir


def random_weight_decode_options(tokens_per_s: float = 3.5) -> dict[str, Any]:
    """Decoding options that make a random-weight Whisper cost what a real one does.

    Random weights never emit end-of-text, so each 30 s window would decode to the length
    limit; a fixed length of ``tokens_per_s`` (about real English output) keeps timings
    realistic. The text is meaningless either way.
    """
    tokens = round(tokens_per_s * 30)
    # CT2 halves max_new_tokens for Whisper's prompt accounting: 2N - 3 gives N tokens.
    # Without timestamps each window advances a full 30 s; random timestamp tokens would
    # move the window arbitrarily and decode far more windows than real audio needs.
    return {
        "temperature": 0.0,
        "suppress_tokens": [-1, 50257],
        "max_new_tokens": 2 * tokens - 3,
        "without_timestamps": True,
    }
