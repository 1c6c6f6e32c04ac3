"""DVC stage `demo_hmdb51`: python stages/demo_hmdb51.py [--params params.yaml] [--set hmdb51.demo.seed=1]"""

from pipeline.cli import stage_command
from pipeline.demo import run_demo_hmdb51

main = stage_command(run_demo_hmdb51)

if __name__ == "__main__":
    main()
