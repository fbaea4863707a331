"""A zoo of tiny real-world media files: one per container, codec and oddity that users bring.

:func:`make_format_zoo` writes each file with PyAV (the same encoders FFmpeg users have), using
:mod:`media_factory`'s moving-square frames (the index strip on top tells which frame came
back) and its tone. Damage is made the way it happens to real files: bytes cut out of one
packet in the middle of the stream (``damaged``: an AC3 audio packet, as measured in issue 12),
or overwritten (``damaged_video``: a VP9 packet replaced by noise, which the decoder refuses;
``concealed_video``: the second half of an H.264 keyframe, which the decoder conceals and
marks corrupt), the container's index left intact. Audio and video are interleaved as a
camera or an encoder writes them.

Every entry must be readable; unreadable files (noise, a truncated index) are
:func:`media_factory.write_garbage` / :func:`media_factory.write_truncated`. An entry whose
encoder this machine's PyAV lacks is left out, and :func:`missing_encoders` names it.

Other helpers (predict / explain end-to-end tests) import :func:`make_format_zoo`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from adamml_core.media.writer import VideoWriter
from media_factory import moving_square_frame, tone

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stdout otherwise (1: errors only)
FPS = 25
TONE_HZ = 1000.0


@dataclass(frozen=True)
class ZooFile:
    """One zoo entry: file name, container format (None: from the suffix), codecs and oddities."""

    file: str
    video: str | None = "libx264"
    audio: str | None = "aac"
    format: str | None = None
    pix_fmt: str = "yuv420p"
    video_options: dict[str, str] = field(default_factory=dict)
    sample_rate: int = 48000
    layout: str = "stereo"
    audio_bit_rate: int | None = None  # encoders without a default (wmav2)
    size: tuple[int, int] | None = None  # None: the zoo's size
    seconds: float | None = None  # None: the zoo's duration
    rotation: int = 0  # counter-clockwise degrees in the display matrix (PyAV's sign): -90 is "rotate=90"
    variable_frame_rate: bool = False
    video_bit_rate: int | None = None  # MPEG-1/2/4's default rate blurs the index strip at any size
    # (stream "audio"/"video", how: "cut", "noise" or "noise_tail", which packet of that stream, from 0)
    damage: tuple[str, str, int] | None = None


X264 = {"preset": "ultrafast", "crf": "18", "g": "12"}
VPX = {"deadline": "realtime", "cpu-used": "8", "g": "12"}
MPEG_RATE = 2_000_000  # high enough for the index strip to survive MPEG-1/2/4 at every zoo size

ZOO: dict[str, ZooFile] = {
    "h264_aac_mp4": ZooFile("h264_aac.mp4", video_options=X264),
    "pcm_mov": ZooFile("h264_pcm.mov", audio="pcm_s16le", video_options=X264),
    "m4v": ZooFile("h264_aac.m4v", format="mp4", video_options=X264),
    "hevc_mkv": ZooFile("hevc_ac3.mkv", video="libx265", audio="ac3",
                        video_options={"preset": "ultrafast", "crf": "8", "x265-params": "log-level=error:keyint=12"}),
    "vp9_webm": ZooFile("vp9_opus.webm", video="libvpx-vp9", audio="libopus", video_options=VPX),
    "av1_mkv": ZooFile("av1_opus.mkv", video="libsvtav1", audio="libopus", size=(64, 64),
                       video_options={"preset": "12", "g": "12"}),
    "mpeg2_mpg": ZooFile("mpeg2_mp2.mpg", video="mpeg2video", audio="mp2", video_bit_rate=MPEG_RATE),
    "mpeg1_mpeg": ZooFile("mpeg1_mp2.mpeg", video="mpeg1video", audio="mp2", sample_rate=44100,
                          video_bit_rate=MPEG_RATE),
    "mpeg2_ts": ZooFile("mpeg2_ac3.ts", video="mpeg2video", audio="ac3", video_bit_rate=MPEG_RATE),
    "mpeg4_avi": ZooFile("mpeg4_mp3.avi", video="mpeg4", audio="libmp3lame", sample_rate=44100,
                         video_bit_rate=MPEG_RATE),
    "msmpeg4_avi": ZooFile("msmpeg4v3_pcm.avi", video="msmpeg4", audio="pcm_s16le", video_bit_rate=MPEG_RATE),
    "flv": ZooFile("flv1_mp3.flv", video="flv", audio="libmp3lame", sample_rate=44100, video_bit_rate=MPEG_RATE),
    "3gp": ZooFile("mpeg4_aac.3gp", video="mpeg4", audio="aac", layout="mono", sample_rate=16000,
                   video_bit_rate=MPEG_RATE),
    "wmv": ZooFile("wmv2_wma.wmv", video="wmv2", audio="wmav2", sample_rate=44100, audio_bit_rate=64000,
                   video_bit_rate=MPEG_RATE),
    "ac3": ZooFile("h264_ac3.mp4", audio="ac3", video_options=X264),
    "mp3": ZooFile("h264_mp3.mkv", audio="libmp3lame", sample_rate=44100, video_options=X264),
    "aac51": ZooFile("h264_aac51.mp4", layout="5.1", video_options=X264),
    "opus": ZooFile("h264_opus.mkv", audio="libopus", video_options=X264),
    "no_audio": ZooFile("h264_silent.mp4", audio=None, video_options=X264),
    # the middle of the audio (packet 12 of ~32); a P-frame of the VP9 video; the keyframe at 12 of the H.264
    "damaged": ZooFile("damaged_ac3.mp4", audio="ac3", damage=("audio", "cut", 12), video_options=X264),
    "damaged_video": ZooFile("damaged_vp9.webm", video="libvpx-vp9", audio="libopus", video_options=VPX,
                             damage=("video", "noise", 14)),
    "concealed_video": ZooFile("concealed_h264.mkv", damage=("video", "noise_tail", 12), video_options=X264),
    "rotated": ZooFile("rotated.mp4", rotation=-90, video_options=X264),
    "vfr": ZooFile("vfr.mp4", variable_frame_rate=True, video_options=X264),
    "odd_size": ZooFile("odd_321x239.webm", video="libvpx-vp9", audio="libopus", size=(321, 239), seconds=0.4,
                        video_options=VPX),
    "tiny": ZooFile("tiny_16x12.mp4", size=(16, 12), video_options=X264),
    "large": ZooFile("large_1920x1080.mp4", size=(1920, 1080), seconds=0.2, audio=None, video_options=X264),
}


def missing_encoders() -> dict[str, str]:
    """``{zoo name: encoder}`` for the entries this machine's PyAV cannot write."""
    have = av.codecs_available
    return {name: codec for name, spec in ZOO.items() for codec in (spec.video, spec.audio)
            if codec is not None and codec not in have}


class _PacketDamager:
    """Stands in for the output container and damages one packet of one stream on its way in.

    ``cut``: the second half of the packet's bytes cut out; ``noise``: all its bytes replaced;
    ``noise_tail``: its second half replaced. The container's own index describes the packet as
    written, so the file stays playable and only that packet is damaged: what a bad sector or
    a broken download does.
    """

    def __init__(self, container: Any, stream_kind: str, how: str, packet: int):
        self._container, self._kind, self._how, self._packet, self._seen = container, stream_kind, how, packet, 0

    def mux(self, packets: Any) -> None:
        for packet in packets if isinstance(packets, (list, tuple)) else [packets]:
            if packet.stream.type == self._kind and packet.size:
                if self._seen == self._packet:
                    packet = damaged_packet(packet, self._how)
                self._seen += 1
            self._container.mux(packet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def damaged_packet(packet: av.Packet, how: str) -> av.Packet:
    """A copy of ``packet`` with its bytes cut or overwritten (see :class:`_PacketDamager`)."""
    data = bytes(packet)
    half = max(1, len(data) // 2)
    noise = np.random.default_rng(len(data)).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    payload = {"cut": data[:half], "noise": noise, "noise_tail": data[:half] + noise[half:]}[how]
    out = av.Packet(payload)
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    out.time_base, out.stream, out.is_keyframe = packet.time_base, packet.stream, packet.is_keyframe
    return out


def write_zoo_file(path: Path, spec: ZooFile, *, seconds: float, size: tuple[int, int]) -> Path:
    """Write one zoo entry (moving squares, index strip, a 1 kHz tone; interleaved) to ``path``."""
    width, height = spec.size or size
    seconds = spec.seconds if spec.seconds is not None else seconds
    if spec.damage is not None:  # the damaged packet must exist, with frames after it up to the next keyframe
        seconds = max(seconds, 1.0)
    frames = max(2, int(round(seconds * FPS)))
    with VideoWriter(path, format=spec.format) as writer:
        if spec.video is not None:
            writer.add_video(spec.video, fps=FPS, width=width, height=height, pix_fmt=spec.pix_fmt,
                             options=dict(spec.video_options) or None, bit_rate=spec.video_bit_rate,
                             time_base=Fraction(1, 1000) if spec.variable_frame_rate else None)
            if spec.rotation:
                writer.video.set_display_rotation(spec.rotation)
        track = None
        if spec.audio is not None:
            writer.add_audio(rate=spec.sample_rate, layout=spec.layout, codec=spec.audio, bit_rate=spec.audio_bit_rate)
            samples = tone(TONE_HZ, frames / FPS, spec.sample_rate)
            track = np.repeat(samples[None], writer.audio.codec_context.layout.nb_channels, axis=0)
        if spec.damage is not None:
            writer.container = _PacketDamager(writer.container, *spec.damage)
        _write_interleaved(writer, spec, frames, (width, height), track)
    return path


def _write_interleaved(writer: VideoWriter, spec: ZooFile, frames: int, size: tuple[int, int],
                       track: np.ndarray | None) -> None:
    """Each frame, then the audio up to its end; alternating short and long gaps for variable frame rate."""
    written, t_ms = 0, 0
    for k in range(frames if spec.video is not None else 0):
        image = moving_square_frame(k, *size)
        if spec.variable_frame_rate:
            writer.write_frame(image, pts=t_ms, time_base=Fraction(1, 1000))
            t_ms += int(1000 / FPS * (0.6 if k % 2 == 0 else 1.4))
        else:
            writer.write_frame(image)
        if track is not None:
            end = int(round((k + 1) / FPS * spec.sample_rate))
            if end > written:
                writer.write_audio(track[:, written:end], written)
                written = end
    if track is not None and written < track.shape[1]:
        writer.write_audio(track[:, written:], written)


def make_format_zoo(folder: Path, *, seconds: float = 1.0, size: tuple[int, int] = (64, 48)) -> dict[str, Path]:
    """Write one tiny file per zoo entry into ``folder``; returns ``{name: path}`` (see :data:`ZOO`).

    ``seconds`` and ``size`` apply to every entry that does not fix its own (``tiny``, ``large``,
    ``odd_size``, ``av1_mkv``); the damaged entries last at least 1 s (their packet is in the middle).

    Entries whose encoder is missing here are left out (:func:`missing_encoders`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    missing = missing_encoders()
    return {name: write_zoo_file(folder / spec.file, spec, seconds=seconds, size=size)
            for name, spec in ZOO.items() if name not in missing}
