"""DVC stage `demo_ava`: python stages/demo_ava.py [--params params.yaml] [--set ava.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo_ava

main = stage_command(run_demo_ava)

if __name__ == "__main__":
    main()
