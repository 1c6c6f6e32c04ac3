"""DVC stage `demo_epic`: python stages/demo_epic.py [--params params.yaml] [--set epic.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo_epic

main = stage_command(run_demo_epic)

if __name__ == "__main__":
    main()
