"""DVC stage `evaluate`: python stages/evaluate.py [--variant slowfast] [--params params.yaml] [--set KEY=VALUE]"""

from pipeline.cli import stage_command
from pipeline.evaluate import run_evaluate

main = stage_command(run_evaluate, variants=True)

if __name__ == "__main__":
    main()
