"""Build src/genrekit/samples/ from ../shared/data/demo-clips: the freely licensed clips `genrekit demo` classifies.

Clips of at most 30.5 s are copied unmodified. Longer ones are trimmed to keep the package small (all
their licenses allow derivatives; the change is noted in samples/LICENSES.md): the Brahms and
Kevin MacLeod clips to their first 30 s (OGG Vorbis, as the source), and the Los Rombos song to 60 s
from 0:30 (still MP3, so the demo also exercises MP3 decoding and a multi-window timeline).

Usage: python scripts/make_samples.py [--source ../shared/data/demo-clips]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
TRIMS = {  # file -> (start_s, duration_s)
    "brahms_hungarian_dance_5.ogg": (0.0, 30.0),
    "kevin_macleod_vibe_ace.ogg": (0.0, 30.0),
    "los_rombos_fantasma.mp3": (30.0, 60.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "demo-clips")
    args = parser.parse_args()
    out = REPO / "src" / "genrekit" / "samples"
    (out / "licenses").mkdir(parents=True, exist_ok=True)
    for clip in sorted(args.source.glob("*.*")):
        if clip.suffix.lower() not in {".ogg", ".mp3"}:
            continue
        if clip.name not in TRIMS:
            shutil.copyfile(clip, out / clip.name)
            continue
        start, duration = TRIMS[clip.name]
        info = sf.info(clip)
        y, sr = sf.read(clip, start=int(start * info.samplerate), frames=int(duration * info.samplerate), dtype="float32")
        fmt = "MP3" if clip.suffix.lower() == ".mp3" else "OGG"
        sf.write(out / clip.name, y, sr, format=fmt, subtype="MPEG_LAYER_III" if fmt == "MP3" else "VORBIS")
    for lic in (args.source / "licenses").iterdir():
        shutil.copyfile(lic, out / "licenses" / lic.name)
    print(f"samples written to {out}")


if __name__ == "__main__":
    main()
