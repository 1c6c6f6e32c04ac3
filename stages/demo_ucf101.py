"""DVC stage `demo_ucf101`: python stages/demo_ucf101.py [--params params.yaml] [--set ucf101.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo_ucf101

main = stage_command(run_demo_ucf101)

if __name__ == "__main__":
    main()
