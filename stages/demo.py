"""DVC stage `demo`: python stages/demo.py [--params params.yaml] [--set demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo

main = stage_command(run_demo)

if __name__ == "__main__":
    main()
