"""DVC stage `evaluate_ava@<member>`: python stages/evaluate_ava.py --dataset ava --variant slowfast [--params params.yaml] [--set KEY=VALUE]"""

from pipeline.cli import stage_command
from pipeline.evaluate_ava import run_evaluate_ava

main = stage_command(run_evaluate_ava, variants=True, datasets=True)

if __name__ == "__main__":
    main()
