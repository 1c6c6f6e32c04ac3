"""DVC stage `download@<dataset>`: python stages/download.py --dataset kinetics [--params params.yaml] [--set download.workers=4]"""

from pipeline.cli import stage_command
from pipeline.download import run_download

main = stage_command(run_download, "dataset")

if __name__ == "__main__":
    main()
