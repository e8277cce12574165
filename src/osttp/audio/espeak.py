"""espeak-ng speech synthesis through its C library (ctypes), from the `espeakng-loader` wheel.

    with_voice = speak("en+m3", "seven", rate_wpm=175, pitch=50)   # int16 samples at SAMPLE_RATE

The wheel ships libespeak-ng (1.52), the English and German dictionaries and the voice variants
(espeak-ng-data/voices/!v), so a pip install is enough; no system espeak-ng is needed. The pip
bindings that exist call the espeak-ng program as a subprocess (absent here) or compile against the
system's headers, so the library's own API is called directly: espeak_Initialize in synchronous
mode, a synthesis callback that collects the samples, espeak_SetVoiceByName / espeak_SetParameter,
espeak_Synth.

The library keeps state between utterances that no call resets (the pitch flutter's phase is a
static counter in its wave generator), so an utterance depends on what the same process
synthesised before it: callers that need reproducible audio synthesise a fixed sequence in a fresh
process (osttp.audio.speech does one voice per spawned process). Variants with a `breath`
setting (f2, f3, f5, Alicia, ...) add aspiration noise that differs from run to run even then
(measured: 2 distinct outputs in 4 fresh runs), so they cannot give reproducible files.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from osttp.errors import OsttpError

SAMPLE_RATE = 22050  # espeak-ng's output rate
ESPEAK_HINT = "pip install 'osttp[speech]' (the espeakng-loader wheel: libespeak-ng with its voices)"
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3  # espeak_PARAMETER: words per minute, base pitch 0..100
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_state: dict[str, Any] = {}


def _loader() -> Any:
    try:
        import espeakng_loader
    except ImportError:
        raise OsttpError(f"espeak-ng is missing (Python package espeakng_loader not installed): {ESPEAK_HINT}") from None
    return espeakng_loader


def data_path() -> Path:
    """The espeak-ng-data folder the wheel ships (dictionaries, voices)."""
    return Path(_loader().get_data_path())


def variants() -> list[str]:
    """Names of the voice variants the installed data holds (the part after '+' in 'en+m3')."""
    return sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())


def version() -> str:
    """The library's version string (recorded in manifests: another version speaks differently)."""
    lib = _library()
    lib.espeak_Info.restype = ctypes.c_char_p
    return lib.espeak_Info(None).decode()


def _library() -> Any:
    """The initialised library of this process (loaded and initialised on first use)."""
    if "lib" in _state:
        return _state["lib"]
    loader = _loader()
    try:
        lib = ctypes.CDLL(loader.get_library_path())
    except OSError as e:
        raise OsttpError(f"espeak-ng library cannot be loaded ({' '.join(str(e).split())}): {ESPEAK_HINT}") from None
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), 0)
    if rate != SAMPLE_RATE:
        raise OsttpError(f"espeak-ng failed to initialise with data {data_path()} (returned {rate}; "
                         f"expected its sample rate {SAMPLE_RATE}): {ESPEAK_HINT}")
    chunks: list[np.ndarray] = []

    def collect(wav: Any, n: int, events: Any) -> int:
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: go on synthesising

    callback = _CALLBACK(collect)  # kept in _state: the library holds only a raw pointer to it
    lib.espeak_SetSynthCallback(callback)
    _state.update(lib=lib, chunks=chunks, callback=callback)
    return lib


def speak(voice: str, text: str, rate_wpm: int = 175, pitch: int = 50) -> np.ndarray:
    """text spoken by voice ('en+m3': language + variant) at rate_wpm words per minute and base
    pitch 0..100, as int16 samples at SAMPLE_RATE."""
    language, _, variant = voice.partition("+")
    if variant and variant not in variants():
        # the library silently falls back to the plain language voice for an unknown variant
        raise OsttpError(f"espeak-ng voice {voice!r}: no variant {variant!r} in {data_path() / 'voices' / '!v'}")
    lib = _library()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise OsttpError(f"espeak-ng voice {voice!r}: language {language!r} not found in {data_path()}")
    lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
    lib.espeak_SetParameter(_PITCH, int(pitch), 0)
    chunks: list[np.ndarray] = _state["chunks"]
    chunks.clear()
    raw = text.encode("utf-8")
    err = lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if err != 0 or lib.espeak_Synchronize() != 0:
        raise OsttpError(f"espeak-ng could not speak {text!r} with voice {voice!r} (error {err})")
    out = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    chunks.clear()
    return out.astype(np.int16, copy=False)
