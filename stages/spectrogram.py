"""DVC stage `spectrogram@<dataset>`: python stages/spectrogram.py --dataset kinetics [--params params.yaml] [--set spectrogram.n_mels=40]"""

from pipeline.cli import stage_command
from pipeline.spectrogram import run_spectrogram

main = stage_command(run_spectrogram, "dataset")

if __name__ == "__main__":
    main()
