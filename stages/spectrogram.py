"""DVC stage `spectrogram` (and `spectrogram_<dataset>`): python stages/spectrogram.py [--dataset epic] [--params params.yaml] [--set spectrogram.n_mels=64]"""

from pipeline.cli import stage_command
from pipeline.spectrogram import run_spectrogram

main = stage_command(run_spectrogram, datasets=True)

if __name__ == "__main__":
    main()
