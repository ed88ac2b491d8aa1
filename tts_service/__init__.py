"""tts_service: Kokoro-82M speech synthesis over HTTP, streamed sentence by sentence.

``python -m tts_service`` (port 8002) loads Kokoro once at start-up (``config.json``,
``kokoro-v1_0.pth`` and ``voices/*.pt`` in ``ROOMSCRIBE_MODELS_DIR/kokoro`` or
``ROOMSCRIBE_TTS_MODEL_DIR``; ``python -m devkit models --synthetic`` writes a random-weight
one) and serves:

``POST /v1/synthesize`` ``{"text", "voice"?, "speed"?}`` (``voice``/``speed`` may be null:
the default voice, speed 1.0; speed in [0.25, 4.0])
    PCM s16le mono at 24 kHz (header ``X-Sample-Rate: 24000``), streamed: each sentence is
    sent as soon as it is synthesized. This is what the agent's ``HttpSynthesizer`` reads.

    With ``Accept: application/x-ndjson`` the answer is JSON lines instead, one per piece
    (a sentence, or part of a long one) and then a last one::

        {"type": "audio", "index": 0, "text": "Hello there.", "start_s": 0.0,
         "duration_s": 0.9, "sample_rate": 24000, "audio": "<base64 PCM s16le>",
         "words": [{"text": "Hello", "start_s": 0.0, "end_s": 0.41}, ...]}
        {"type": "done", "pieces": 3, "duration_s": 2.7}

    Word times are Kokoro's (from its predicted phoneme durations), in seconds from the
    start of the whole answer; ``null`` where Kokoro gives none. A failure after the first
    line ends the stream with ``{"type": "error", "error": {"code", "message"}}``.

``POST /v1/audio/speech`` (OpenAI-compatible)
    ``{"model", "input", "voice"?, "speed"?, "response_format"?}``; ``model`` is any name
    (one model serves), ``response_format`` is ``mp3`` (OpenAI's default), ``opus`` (Ogg),
    ``aac`` (ADTS), ``flac``, ``wav`` (a streaming header: RIFF and data sizes
    ``0xFFFFFFFF``) or ``pcm`` (24 kHz s16le mono, as OpenAI's). Streamed like the above.

``GET /v1/voices``
    ``{"voices": [{"id", "language", "gender"}], "default", "synthetic"}``. A voice may
    also be a mix, ``"af_heart,am_adam"`` (packs averaged, as Kokoro does).

``/healthz``, ``/readyz`` (which model, synthetic or real, which G2P), ``/metrics``.

Every ``/v1`` route needs an internal token (``Authorization: Bearer``, ``aud=tts``) unless
``ROOMSCRIBE_TTS_AUTH=false``. Errors are ``{"error": {"code", "message"}}``: 400
``invalid_json`` / ``unknown_voice``, 401 ``unauthorized`` / ``token_expired``, 413
``text_too_long`` (over ``ROOMSCRIBE_TTS_MAX_CHARS``) / ``body_too_large``, 422
``invalid_request`` (a missing or empty text, a speed out of range, an unknown format),
429 ``busy`` with ``Retry-After`` (``ROOMSCRIBE_TTS_MAX_CONCURRENT`` requests synthesizing),
503 ``not_ready``.

A client that disconnects cancels its synthesis: sentences not started are never
synthesized, and the one running stops at the model's next module boundary
(:mod:`tts_service.engine`). Sentences run on ``ROOMSCRIBE_TTS_WORKERS`` threads (default 1,
each model call using ``ROOMSCRIBE_TTS_TORCH_THREADS``); concurrent requests take turns
sentence by sentence.
"""
