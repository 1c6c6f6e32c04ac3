"""DVC stage `demo_charades`: python stages/demo_charades.py [--params params.yaml] [--set charades.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo_charades

main = stage_command(run_demo_charades)

if __name__ == "__main__":
    main()
