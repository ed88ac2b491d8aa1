"""A synthetic Kaldi model that the real libvosk loads and that hears pure tones as words.

Real Vosk weights cannot be downloaded on the machines this project is built on, yet the live
path (agent -> STT service -> KaldiRecognizer) should run the real engine in tests. So this
module writes a complete Vosk model directory (the recipe in
``shared/notes/synthetic-models.md`` section 1, verified against vosk 0.3.45) whose acoustic
"network" is set by hand: a pure tone at a word's frequency (:mod:`devkit.tones`) makes that
word win, silence and broadband noise make silence win. A tone sequence therefore decodes to
exactly those words at exactly those times: deterministic ground truth for recognition,
attribution, timestamps and endpointing.

Layout (Vosk's "V2" layout, read by vosk-api ``src/model.cc`` when ``am/final.mdl`` exists)::

    conf/model.conf   decoder and endpointing options
    conf/mfcc.conf    feature options
    am/final.mdl      Kaldi TransitionModel + nnet3 AmNnetSimple (Kaldi binary format)
    graph/HCLG.fst    decoding graph (binary OpenFst VectorFst)
    graph/words.txt   word symbol table
    graph/phones/word_boundary.int
    README.txt        what this is
    roomscribe-synthetic.json   stamp: variant, version, seed (written last)

Variants: ``tiny`` is only the tone detector (builds in milliseconds, decodes ~free);
``small`` adds a TDNN-like stack of random layers (~4M parameters) whose output weights are
tiny, so the decisions are the same but each frame costs CPU like a small real model does.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from devkit.tones import (
    MEL_HIGH_HZ,
    MEL_LOW_HZ,
    MODEL_SAMPLE_RATE,
    NUM_MEL_BINS,
    TONE_WORDS,
    mel_scale,
    tone_frequency,
    tone_mel_bin,
)

#: The model sizes :func:`build_synthetic_vosk_model` can write.
VoskVariant = Literal["tiny", "small"]
VOSK_VARIANTS: Final[tuple[VoskVariant, ...]] = get_args(VoskVariant)

#: Bump whenever the files written change, so cached models of an older recipe are rebuilt.
SYNTHETIC_VOSK_VERSION: Final = 1
#: Name of the stamp file that marks a finished build.
STAMP_NAME: Final = "roomscribe-synthetic.json"
_STAMP_KIND: Final = "roomscribe-synthetic-vosk"

#: The files a finished model directory holds (besides the stamp).
MODEL_FILES: Final[tuple[str, ...]] = (
    "conf/model.conf",
    "conf/mfcc.conf",
    "am/final.mdl",
    "graph/HCLG.fst",
    "graph/words.txt",
    "graph/phones/word_boundary.int",
    "README.txt",
)

# --- Features ---------------------------------------------------------------------------------
# Kaldi frames: 25 ms windows every 10 ms, FFT padded to the next power of two.
_FRAME_LENGTH: Final = MODEL_SAMPLE_RATE * 25 // 1000
_FFT_SIZE: Final = 1 << (_FRAME_LENGTH - 1).bit_length()
_PREEMPHASIS: Final = 0.97
_CEPSTRAL_LIFTER: Final = 22.0

# num-ceps equals num-mel-bins so the DCT is square and the network can invert it exactly.
# use-energy=false keeps c0 as the DCT's first coefficient (the mean log-mel energy, scaled),
# which the detector needs. dither=0 makes features, and so results, deterministic: Kaldi's
# default dither adds random noise to every sample. allow-downsample lets 48 kHz recognizers
# feed this 16 kHz model (upsampling is not supported: an 8 kHz recognizer fails).
_MFCC_CONF: Final = f"""\
--sample-frequency={MODEL_SAMPLE_RATE}
--use-energy=false
--num-mel-bins={NUM_MEL_BINS}
--num-ceps={NUM_MEL_BINS}
--low-freq={MEL_LOW_HZ:g}
--high-freq={MEL_HIGH_HZ:g}
--cepstral-lifter={_CEPSTRAL_LIFTER:g}
--dither=0
--allow-downsample=true
"""

# frame-subsampling-factor=3: vosk hard-codes 30 ms per output frame when it turns frame
# indices into word times, so any other factor would scale every timestamp. Phone 1 is SIL,
# the only silence phone the endpointer counts; the trailing-silence rules close an utterance
# 0.5-1.0 s after the last word, like a real model's configuration.
_MODEL_CONF: Final = """\
--min-active=200
--max-active=3000
--beam=10
--lattice-beam=2
--acoustic-scale=1.0
--frame-subsampling-factor=3
--endpoint.silence-phones=1
--endpoint.rule2.min-trailing-silence=0.5
--endpoint.rule3.min-trailing-silence=0.75
--endpoint.rule4.min-trailing-silence=1.0
"""

# --- Tone detector ----------------------------------------------------------------------------
# A word's detector is (log energy in its mel bin) - (mean log energy over all bins) - (what
# white noise would give there) - this threshold, in nats. White noise sits at ~0 (its
# per-frame spread stays under ~2.5 even in the narrowest bins), a tone at its own bin at
# 11-15, and a tone in white noise still at ~0.5 or more down to 5 dB SNR.
_DETECTOR_THRESHOLD: Final = 4.0
# Digital silence (all-zero samples, as between synthesized tones) floors every mel energy at
# FLT_EPSILON, a flat spectrum: the low bins' noise correction (pre-emphasis leaves white
# noise ~5 nats weaker there) would then make their detectors fire. A gate unit,
# relu(this - mean log energy), is ~3.9 at the floor (ln FLT_EPSILON = -15.9) and 0 for any
# audible frame (a single 1-LSB sample already lifts the mean to ~0); it votes for SIL.
_SILENCE_GATE_LOG_ENERGY: Final = -12.0
_SILENCE_GATE_GAIN: Final = 10.0
# Output logit of a word = gain * relu(detector) + bias; silence's logit is 0 (plus the
# gate's vote). The gain widens
# the ~3-nat gap between a tone's own detector and its neighbour bin's (the smallest gap, at
# the adjacent top bins) to ~6 nats per frame; the bias makes silence win when nothing fires.
_WORD_GAIN: Final = 2.0
_WORD_BIAS: Final = -1.0

# --- Decoding graph ---------------------------------------------------------------------------
# -log probability of entering a word. Without a price, one long tone could equally be read
# as the same word several times over (leave via epsilon, re-enter); with it, one word wins.
_WORD_ENTRY_COST: Final = 2.0
_SIL_ENTRY_COST: Final = 1.0

# --- The "small" variant's random stack -------------------------------------------------------
_TDNN_DIM: Final = 768
_TDNN_BOTTLENECK: Final = 160
# Frame offsets each layer splices: +-1 near the input, +-3 higher up (output frames are every
# third input frame), like the TDNN-F models Vosk ships. 9 layers, ~4M parameters.
_TDNN_OFFSETS: Final[tuple[int, ...]] = (1, 1, 1, 1, 3, 3, 3, 3, 3)
# MFCCs reach ~150 (c0 is sqrt(40) times the mean log energy); scaling the input down keeps
# the random layers' activations near 1 (RMS ~0.6 at the top), so the tiny output weights
# below move each logit by under 0.01 nats, far below the detector's margins of 6+.
_TDNN_INPUT_SCALE: Final = 1.0 / 50.0
_TDNN_OUTPUT_STD: Final = 1e-4


@dataclass(frozen=True)
class _Component:
    """One nnet3 component and the node that applies it."""

    name: str
    kind: Literal["affine", "relu", "log-softmax"]
    input: str
    linear: npt.NDArray[np.float32] | None = None
    bias: npt.NDArray[np.float32] | None = None
    dim: int = 0


class _KaldiBinaryWriter:
    """Kaldi's binary serialization (``base/io-funcs``, ``matrix/kaldi-matrix``), little-endian.

    Binary rather than text because the small variant holds ~4M weights: numpy writes them as
    raw float32 in milliseconds, where formatting and parsing them as text takes seconds.
    """

    def __init__(self) -> None:
        # "\0B" opens every Kaldi binary file; Kaldi switches to binary reading when it sees it.
        self._parts: list[bytes] = [b"\0B"]

    def token(self, token: str) -> None:
        """A token such as ``<Nnet3>``: the text followed by one space."""
        self._parts.append(token.encode("ascii") + b" ")

    def raw(self, text: str) -> None:
        """Text as is (the nnet3 config lines are plain lines even in binary files)."""
        self._parts.append(text.encode("ascii"))

    def int32(self, value: int) -> None:
        """A signed int32: a size byte (4) then the value."""
        self._parts.append(struct.pack("<bi", 4, value))

    def float32(self, value: float) -> None:
        """A float: a size byte (4) then the value."""
        self._parts.append(struct.pack("<bf", 4, value))

    def int32_vector(self, values: list[int]) -> None:
        """A std::vector<int32>: element size byte, int32 length, the values."""
        self._parts.append(struct.pack("<bi", 4, len(values)))
        self._parts.append(np.asarray(values, dtype="<i4").tobytes())

    def float_vector(self, values: npt.NDArray[np.float32]) -> None:
        """A Kaldi Vector<float>: token ``FV``, int32 dimension, the values."""
        self.token("FV")
        self.int32(values.shape[0])
        self._parts.append(values.astype("<f4").tobytes())

    def float_matrix(self, values: npt.NDArray[np.float32]) -> None:
        """A Kaldi Matrix<float>: token ``FM``, int32 rows, int32 columns, row-major values."""
        self.token("FM")
        self.int32(values.shape[0])
        self.int32(values.shape[1])
        self._parts.append(np.ascontiguousarray(values, dtype="<f4").tobytes())

    def getvalue(self) -> bytes:
        """Everything written so far."""
        return b"".join(self._parts)


# --- Geometry of the model ----------------------------------------------------------------------
# Phone 1 is SIL; word k (0-based in TONE_WORDS) is phone k + 2, one whole-word phone per word.
# Each phone has one emitting HMM state and pdf = phone - 1, so pdf 0 is SIL and pdf k + 1 is
# word k. Word ids in words.txt are k + 1 (0 is <eps>).
_NUM_PHONES: Final = len(TONE_WORDS) + 1
_NUM_PDFS: Final = _NUM_PHONES


def _self_loop_tid(phone: int) -> int:
    # One transition state per phone, two transitions each (self-loop first, then exit), and
    # transition ids count from 1 in that order.
    return 2 * phone - 1


def _exit_tid(phone: int) -> int:
    return 2 * phone


def _write_transition_model(out: _KaldiBinaryWriter) -> None:
    out.token("<TransitionModel>")
    out.token("<Topology>")
    phones = list(range(1, _NUM_PHONES + 1))
    out.int32_vector(phones)
    out.int32_vector([-1, *([0] * _NUM_PHONES)])  # phone -> topology entry; phone 0 has none
    out.int32(1)  # one topology entry, shared by every phone
    out.int32(2)  # two states: 0 emits (pdf class 0), 1 is the final non-emitting state
    out.int32(0)
    out.int32(2)
    out.int32(0)  # 0 -> 0 (self-loop), p = 0.5
    out.float32(0.5)
    out.int32(1)  # 0 -> 1 (exit), p = 0.5
    out.float32(0.5)
    out.int32(-1)  # final state: no pdf, no transitions
    out.int32(0)
    out.token("</Topology>")
    out.token("<Triples>")
    out.int32(_NUM_PHONES)
    for phone in phones:  # (phone, hmm state, pdf), sorted
        out.int32(phone)
        out.int32(0)
        out.int32(phone - 1)
    out.token("</Triples>")
    out.token("<LogProbs>")
    # Index 0 is unused (transition ids start at 1); every transition has probability 0.5.
    num_tids = 2 * _NUM_PHONES
    out.float_vector(np.array([0.0] + [math.log(0.5)] * num_tids, dtype=np.float32))
    out.token("</LogProbs>")
    out.token("</TransitionModel>")


def _mel_filterbank() -> npt.NDArray[np.float64]:
    """Kaldi's triangular mel filters (``feat/mel-computations.cc``) over the FFT bins."""
    num_fft_bins = _FFT_SIZE // 2
    fft_bin_hz = MODEL_SAMPLE_RATE / _FFT_SIZE
    low, high = mel_scale(MEL_LOW_HZ), mel_scale(MEL_HIGH_HZ)
    delta = (high - low) / (NUM_MEL_BINS + 1)
    mels = np.array([mel_scale(i * fft_bin_hz) for i in range(num_fft_bins)])
    banks = np.zeros((NUM_MEL_BINS, num_fft_bins))
    for b in range(NUM_MEL_BINS):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        rising = (mels > left) & (mels <= centre)
        falling = (mels > centre) & (mels < right)
        banks[b, rising] = (mels[rising] - left) / (centre - left)
        banks[b, falling] = (right - mels[falling]) / (right - centre)
    return banks


def _white_noise_log_energy() -> npt.NDArray[np.float64]:
    """Expected log mel energy of white noise per bin, relative to the mean over bins.

    White noise puts equal power in every FFT bin, so a mel bin collects power in proportion
    to its width, tilted by pre-emphasis (``|1 - 0.97 e^-jw|^2``: ~0.001 at DC, ~3.9 at
    Nyquist). Subtracting this makes noise read ~0 in every bin, so only tones exceed the
    threshold.
    """
    freqs = np.arange(_FFT_SIZE // 2) * (2 * np.pi / _FFT_SIZE)
    tilt = np.abs(1 - _PREEMPHASIS * np.exp(-1j * freqs)) ** 2
    level = np.log(_mel_filterbank() @ tilt)
    return np.asarray(level - level.mean(), dtype=np.float64)


def _mfcc_to_log_mel() -> npt.NDArray[np.float64]:
    """Matrix taking Kaldi's liftered MFCCs back to the 40 log mel energies.

    Kaldi computes ``mfcc = lifter * (D @ log_mel)`` with D its orthonormal DCT-II
    (``ComputeDctMatrix``) and lifter ``1 + (Q/2) sin(pi i / Q)``, Q = 22. D is square here
    (num-ceps = num-mel-bins), so ``log_mel = D.T @ (mfcc / lifter)``.
    """
    n = NUM_MEL_BINS
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    dct = np.sqrt(2.0 / n) * np.cos(np.pi / n * (j + 0.5) * k)
    dct[0, :] = np.sqrt(1.0 / n)
    lifter = 1.0 + 0.5 * _CEPSTRAL_LIFTER * np.sin(np.pi * np.arange(n) / _CEPSTRAL_LIFTER)
    return np.asarray(dct.T / lifter[None, :], dtype=np.float64)


def _detector_components(head_input: str) -> list[_Component]:
    """The tone detector: MFCC -> rectified detectors -> logits -> log-softmax.

    One detector per word, plus a digital-silence gate. ``head_input`` is the descriptor the
    output layer reads (the detectors, possibly followed by more).
    """
    to_log_mel = _mfcc_to_log_mel()
    mean_log_mel = to_log_mel.mean(axis=0, keepdims=True)
    noise = _white_noise_log_energy()
    bins = [tone_mel_bin(word) for word in TONE_WORDS]
    num_words = len(TONE_WORDS)
    # Rows 0..V-1: (log energy of the word's bin) - (mean log energy over bins) - (what white
    # noise reads there) - threshold, as rows acting on the MFCCs.
    # Row V, the gate: positive only when the mean log energy is at Kaldi's floor.
    linear = np.concatenate([to_log_mel[bins, :] - mean_log_mel, -mean_log_mel])
    bias = np.concatenate([-noise[bins] - _DETECTOR_THRESHOLD, [_SILENCE_GATE_LOG_ENERGY]])
    # Output row 0 is SIL: the gate's vote only (0 otherwise). Row k + 1 is word k.
    out_linear = np.zeros((_NUM_PDFS, num_words + 1), dtype=np.float64)
    out_linear[0, num_words] = _SILENCE_GATE_GAIN
    out_linear[1:, :num_words] = _WORD_GAIN * np.eye(num_words)
    out_bias = np.concatenate([[0.0], np.full(num_words, _WORD_BIAS)])
    return [
        _Component("detect", "affine", "input", linear.astype(np.float32), bias.astype(np.float32)),
        _Component("detect.relu", "relu", "detect", dim=num_words + 1),
        _Component(
            "output.affine",
            "affine",
            head_input,
            out_linear.astype(np.float32),
            out_bias.astype(np.float32),
        ),
        _Component("output.log-softmax", "log-softmax", "output.affine", dim=_NUM_PDFS),
    ]


def _splice(node: str, offset: int) -> str:
    return f"Append(Offset({node},{-offset}),{node},Offset({node},{offset}))"


def _random_stack(seed: int) -> tuple[list[_Component], str, npt.NDArray[np.float32]]:
    """The small variant's TDNN-like stack; returns its components, last node, output weights.

    He-initialized (std sqrt(2 / fan-in) before a ReLU, sqrt(1 / fan-in) for the linear
    bottleneck) so activations keep their scale through the nine layers.
    """
    rng = np.random.default_rng(seed)

    def weights(rows: int, cols: int, std: float) -> npt.NDArray[np.float32]:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(std)).astype(
            np.float32
        )

    def zeros(n: int) -> npt.NDArray[np.float32]:
        return np.zeros(n, dtype=np.float32)

    components: list[_Component] = []
    node = "input"
    in_dim = NUM_MEL_BINS
    for layer, offset in enumerate(_TDNN_OFFSETS, start=1):
        prefix = f"tdnn{layer}"
        if layer == 1:
            std = math.sqrt(2.0 / (3 * in_dim)) * _TDNN_INPUT_SCALE
            affine_in = _splice(node, offset)
        else:
            bottleneck = f"{prefix}.linear"
            components.append(
                _Component(
                    bottleneck,
                    "affine",
                    node,
                    weights(_TDNN_BOTTLENECK, in_dim, math.sqrt(1.0 / in_dim)),
                    zeros(_TDNN_BOTTLENECK),
                )
            )
            in_dim = _TDNN_BOTTLENECK
            std = math.sqrt(2.0 / (3 * in_dim))
            affine_in = _splice(bottleneck, offset)
        components.append(
            _Component(
                f"{prefix}.affine",
                "affine",
                affine_in,
                weights(_TDNN_DIM, 3 * in_dim, std),
                zeros(_TDNN_DIM),
            )
        )
        components.append(_Component(f"{prefix}.relu", "relu", f"{prefix}.affine", dim=_TDNN_DIM))
        node, in_dim = f"{prefix}.relu", _TDNN_DIM
    return components, node, weights(_NUM_PDFS, _TDNN_DIM, _TDNN_OUTPUT_STD)


def _network(variant: VoskVariant, seed: int) -> list[_Component]:
    if variant == "tiny":
        return _detector_components("detect.relu")
    stack, last, stack_out = _random_stack(seed)
    detector = _detector_components(f"Append(detect.relu,{last})")
    head = detector[2]
    assert head.linear is not None
    # The output layer reads [detectors, stack]: the detector columns decide, the stack's tiny
    # columns only cost the CPU a real model's last layer would.
    joined = np.concatenate([head.linear, stack_out], axis=1)
    detector[2] = _Component(head.name, head.kind, head.input, joined, head.bias)
    return stack + detector


def _write_nnet(out: _KaldiBinaryWriter, components: list[_Component]) -> None:
    out.token("<Nnet3>")
    # nnet3 stores its graph as text config lines, even in binary files, ended by a blank line.
    lines = [f"input-node name=input dim={NUM_MEL_BINS}"]
    lines += [
        f"component-node name={c.name} component={c.name} input={c.input}" for c in components
    ]
    lines.append(f"output-node name=output input={components[-1].name} objective=linear")
    out.raw("\n" + "\n".join(lines) + "\n\n")
    out.token("<NumComponents>")
    out.int32(len(components))
    empty = np.zeros(0, dtype=np.float32)
    for c in components:
        out.token("<ComponentName>")
        out.token(c.name)
        if c.kind == "affine":
            assert c.linear is not None and c.bias is not None
            out.token("<AffineComponent>")
            out.token("<LearningRate>")
            out.float32(0.001)
            out.token("<LinearParams>")
            out.float_matrix(c.linear)
            out.token("<BiasParams>")
            out.float_vector(c.bias)
            out.token("</AffineComponent>")
        else:
            tag = "RectifiedLinearComponent" if c.kind == "relu" else "LogSoftmaxComponent"
            out.token(f"<{tag}>")
            out.token("<Dim>")
            out.int32(c.dim)
            # Training statistics; empty is fine for inference.
            out.token("<ValueAvg>")
            out.float_vector(empty)
            out.token("<DerivAvg>")
            out.float_vector(empty)
            out.token("<Count>")
            out.float32(0.0)
            out.token(f"</{tag}>")
    out.token("</Nnet3>")
    # Kaldi recomputes the context from the network when it reads the model.
    out.token("<LeftContext>")
    out.int32(0)
    out.token("<RightContext>")
    out.int32(0)
    # No priors: the outputs are used as log-likelihoods directly.
    out.token("<Priors>")
    out.float_vector(empty)


def _final_mdl(variant: VoskVariant, seed: int) -> bytes:
    out = _KaldiBinaryWriter()
    _write_transition_model(out)
    _write_nnet(out, _network(variant, seed))
    return out.getvalue()


def _hclg_fst() -> bytes:
    """The decoding graph: a loop over SIL and the words, any number of times, any order.

    State 0 (start, final) has one arc per phone into that phone's state S_p, on the phone's
    exit transition id (output: the word, or nothing for SIL); S_p loops on the self-loop
    transition id and returns to 0 by epsilon. The exit-then-self-loops order is Kaldi's
    "reordered" HMM, which vosk's word alignment expects.
    """
    # Per source state: (ilabel, olabel, weight, destination).
    arcs: list[list[tuple[int, int, float, int]]] = [[] for _ in range(_NUM_PHONES + 1)]
    for phone in range(1, _NUM_PHONES + 1):
        word_id = phone - 1  # SIL (phone 1) outputs epsilon (0)
        cost = _SIL_ENTRY_COST if phone == 1 else _WORD_ENTRY_COST
        arcs[0].append((_exit_tid(phone), word_id, cost, phone))
        arcs[phone].append((_self_loop_tid(phone), 0, 0.0, phone))
        arcs[phone].append((0, 0, 0.0, 0))
    num_arcs = sum(len(a) for a in arcs)

    def string(text: str) -> bytes:
        data = text.encode("ascii")
        return struct.pack("<i", len(data)) + data

    # OpenFst FstHeader: magic, fst type, arc type, version 2, flags 0 (no symbol tables),
    # properties kExpanded | kMutable only (claiming nothing we have not checked), start state,
    # number of states, number of arcs.
    parts = [
        struct.pack("<i", 2125659606),
        string("vector"),
        string("standard"),
        struct.pack("<iIQqqq", 2, 0, 3, 0, len(arcs), num_arcs),
    ]
    for state_arcs in arcs:
        # Every state is final with weight 0 (probability 1): an utterance may end anywhere.
        parts.append(struct.pack("<fq", 0.0, len(state_arcs)))
        parts.extend(struct.pack("<iifi", *arc) for arc in state_arcs)
    return b"".join(parts)


def _words_txt() -> str:
    words = ["<eps>", *TONE_WORDS, "#0", "<s>", "</s>"]
    return "".join(f"{word} {i}\n" for i, word in enumerate(words))


def _word_boundary_int() -> str:
    return "1 nonword\n" + "".join(f"{phone} singleton\n" for phone in range(2, _NUM_PHONES + 1))


def _readme(variant: VoskVariant, seed: int) -> str:
    rows = "\n".join(
        f"  {word:<10} {tone_frequency(word):8.1f} Hz   (mel bin {tone_mel_bin(word)})"
        for word in TONE_WORDS
    )
    cost = (
        "only the tone detector: decoding costs next to nothing."
        if variant == "tiny"
        else f"the tone detector plus a random TDNN-like stack (~4M parameters, seed {seed})\n"
        "whose output weights are tiny: same decisions, CPU cost like a small real model\n"
        "(a real model also runs i-vectors and a large graph, so it is slower still)."
    )
    return f"""\
SYNTHETIC Vosk model built by Roomscribe's devkit (devkit/synthetic_vosk.py), variant
"{variant}", recipe version {SYNTHETIC_VOSK_VERSION}. It is NOT a speech recognizer.

It loads in the real libvosk and recognizes pure tones as words: a tone at one of the
frequencies below, 16 kHz mono, is heard as that word; silence and broadband noise are heard as
silence. Make such audio with devkit.tones.synthesize(["alpha", "bravo"]). Real speech
produces arbitrary words.

Variant "{variant}": {cost}

Words (ids as in graph/words.txt, from 1):
{rows}

Vosk closes an utterance after 20 s whatever it hears (its default endpoint rule 5), so a
tone playing at that moment comes out as two words; keep test utterances shorter.

Files follow Vosk's model layout: conf/ (features, decoder), am/final.mdl (Kaldi binary),
graph/ (HCLG.fst, words.txt, phones/word_boundary.int). The stamp {STAMP_NAME} marks
a finished build; delete the directory to rebuild.
"""


def _model_files(variant: VoskVariant, seed: int) -> dict[str, bytes]:
    return {
        "conf/model.conf": _MODEL_CONF.encode(),
        "conf/mfcc.conf": _MFCC_CONF.encode(),
        "am/final.mdl": _final_mdl(variant, seed),
        "graph/HCLG.fst": _hclg_fst(),
        "graph/words.txt": _words_txt().encode(),
        "graph/phones/word_boundary.int": _word_boundary_int().encode(),
        "README.txt": _readme(variant, seed).encode(),
    }


def _stamp(variant: VoskVariant, seed: int) -> dict[str, Any]:
    return {
        "kind": _STAMP_KIND,
        "variant": variant,
        "version": SYNTHETIC_VOSK_VERSION,
        # The tiny model has no random weights: any seed gives the same files.
        "seed": seed if variant == "small" else None,
        "words": list(TONE_WORDS),
    }


def _read_stamp(model_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def synthetic_vosk_model_ready(
    model_dir: Path, *, variant: VoskVariant = "tiny", seed: int = 0
) -> bool:
    """Tell whether ``model_dir`` already holds a finished synthetic model of this kind.

    Args:
        model_dir: A model directory, as given to :func:`build_synthetic_vosk_model`.
        variant: The wanted variant.
        seed: The wanted seed (it only changes the ``small`` variant's random layers).

    Returns:
        True when the stamp matches this variant, seed and recipe version and every model
        file is present.
    """
    stamp = _read_stamp(model_dir)
    return stamp == _stamp(variant, seed) and all(
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
                f"{str(out_dir)!r} is not empty and is not a synthetic Vosk model; "
                "refusing to replace it"
            )
        # An older or different synthetic build: swap it out, then delete it.
        with _scratch_dir(out_dir.parent, out_dir.name) as trash:
            old = trash / "old"
            out_dir.rename(old)
            built.rename(out_dir)
        return
    # rename() replaces an empty directory atomically, and fails if another builder has filled
    # out_dir meanwhile (the caller then checks whether that build is the one it wanted).
    built.rename(out_dir)


def build_synthetic_vosk_model(
    out_dir: Path, *, variant: VoskVariant = "tiny", seed: int = 0
) -> Path:
    """Write a synthetic Vosk model directory that hears :mod:`devkit.tones` tones as words.

    The build is deterministic (same variant and seed, same bytes), atomic (written to a
    temporary directory beside ``out_dir``, then renamed into place) and cached: when
    ``out_dir`` already holds a finished model of the same variant, seed and recipe version,
    it returns at once.

    Args:
        out_dir: Where the model directory goes (created; its parent too). It may exist if it
            is empty or holds an earlier synthetic model, which is then replaced.
        variant: ``"tiny"``: just the tone detector (builds in milliseconds). ``"small"``:
            the same decisions plus ~4M random parameters that cost CPU like
            vosk-model-small-en-us, for benchmarks (~17 MB).
        seed: Seed of the small variant's random layers.

    Returns:
        ``out_dir``, ready for ``vosk.Model(str(out_dir))``.

    Raises:
        ValueError: ``variant`` is unknown.
        FileExistsError: ``out_dir`` holds other files (say, a real model): it is left alone.
    """
    if variant not in VOSK_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VOSK_VARIANTS)}, got {variant!r}")
    out_dir = Path(out_dir)
    if synthetic_vosk_model_ready(out_dir, variant=variant, seed=seed):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_dir(out_dir.parent, out_dir.name) as scratch:
        built = scratch / "model"
        for name, data in _model_files(variant, seed).items():
            path = built / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        # The stamp goes last: its presence means every other file is complete.
        (built / STAMP_NAME).write_text(
            json.dumps(_stamp(variant, seed), indent=2) + "\n", encoding="utf-8"
        )
        try:
            _install(built, out_dir)
        except OSError:
            if synthetic_vosk_model_ready(out_dir, variant=variant, seed=seed):
                return out_dir  # a concurrent builder got there first with the same model
            raise
    return out_dir
