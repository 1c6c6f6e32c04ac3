"""DVC stage `demo@<dataset>`: python stages/demo.py --dataset epic [--params params.yaml] [--set datasets.epic.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo

main = stage_command(run_demo, "dataset")

if __name__ == "__main__":
    main()
