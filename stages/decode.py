"""DVC stage `decode@<dataset>`: python stages/decode.py --dataset kinetics [--params params.yaml] [--set decode.short_side=256]"""

from pipeline.cli import stage_command
from pipeline.decode import run_decode

main = stage_command(run_decode, "dataset")

if __name__ == "__main__":
    main()
