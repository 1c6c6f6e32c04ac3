"""DVC stage `spectrogram`: python stages/spectrogram.py [--params params.yaml] [--set spectrogram.n_mels=64]"""

from pipeline.cli import stage_command
from pipeline.spectrogram import run_spectrogram

main = stage_command(run_spectrogram)

if __name__ == "__main__":
    main()
